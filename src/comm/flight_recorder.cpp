#include "comm/flight_recorder.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "comm/call_stamp.hpp"
#include "core/error.hpp"
#include "core/socket.hpp"

namespace kumi {
namespace {

const char* stateName(FlightRecorder::State s) {
  switch (s) {
    case FlightRecorder::State::Running: return "RUNNING";
    case FlightRecorder::State::Done: return "done";
    case FlightRecorder::State::Failed: return "FAILED";
  }
  return "?";
}

// UTC with microseconds: ranks' dumps line up by wall time.
std::string wallTime(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char b[64];
  std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
  return b;
}

std::string fileSafe(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out;
}

}  // namespace

FlightRecorder::FlightRecorder(std::size_t capacity, Identity who, std::string dir)
    : ring_(capacity), who_(std::move(who)), dir_(std::move(dir)) {}

std::uint64_t FlightRecorder::begin(const CallStamp& stamp, const char* algorithm, const std::vector<int>& peers,
                                    std::uint64_t bytes) {
  if (ring_.empty()) return 0;
  const auto now = std::chrono::steady_clock::now();
  const auto wall = std::chrono::system_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t id = next_++;
  Entry& e = ring_[id % ring_.size()];
  e.id = id;
  e.stamp = stamp;
  e.algorithm = algorithm;
  e.bytes = bytes;
  e.peerCount = static_cast<std::uint32_t>(peers.size());
  for (std::size_t i = 0; i < kPeersKept && i < peers.size(); ++i) e.peers[i] = peers[i];
  e.state = State::Running;
  e.wallStart = wall;
  e.start = e.end = now;
  return id;
}

void FlightRecorder::finish(std::uint64_t handle, State state) {
  if (handle == 0) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& e = ring_[handle % ring_.size()];
  if (e.id != handle) return;  // overwritten meanwhile (a ring smaller than the calls in flight)
  e.state = state;
  e.end = now;
}

std::string FlightRecorder::render(const std::string& reason, std::size_t lastLines) const {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out = cat("# kumi flight recorder: communicator ", who_.commId, ", rank ", who_.rank, " of ", who_.size,
                        " on ", who_.host, ", pid ", ::getpid(), ", job ", who_.jobId, "\n# written ",
                        wallTime(std::chrono::system_clock::now()), " because: ", reason, "\n",
                        "# call_id state started_utc duration_us algorithm bytes peers | call\n");
  const std::uint64_t total = next_ - 1;
  std::uint64_t kept = std::min<std::uint64_t>(total, ring_.size());
  if (lastLines > 0) kept = std::min<std::uint64_t>(kept, lastLines);
  for (std::uint64_t id = total - kept + 1; id <= total; ++id) {
    const Entry& e = ring_[id % ring_.size()];
    if (e.id != id) continue;
    const auto until = e.state == State::Running ? now : e.end;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(until - e.start).count();
    std::string peers;
    for (std::uint32_t i = 0; i < e.peerCount && i < kPeersKept; ++i) peers += cat(i ? "," : "", e.peers[i]);
    if (e.peerCount > kPeersKept) peers += cat(",+", e.peerCount - kPeersKept);
    if (peers.empty()) peers.push_back('-');  // (assigning "-" trips a false -Wrestrict in gcc 12)
    out += cat(id, ' ', stateName(e.state), ' ', wallTime(e.wallStart), ' ', us, e.state == State::Running ? "+" : "",
               ' ', *e.algorithm ? e.algorithm : "-", ' ', e.bytes, ' ', peers, " | ", describeStamp(e.stamp), '\n');
  }
  if (total > kept)
    out += lastLines > 0 && total > lastLines
               ? cat("# ", total - kept, " earlier calls not shown here\n")
               : cat("# ", total - kept, " earlier calls not kept (KUMI_FLIGHT_RECORDER=", ring_.size(), ")\n");
  return out;
}

std::string FlightRecorder::write(const std::string& reason, const std::string& path) const {
  std::string file = path;
  if (file.empty()) {
    if (dir_.empty()) return "";
    file = cat(dir_, "/kumi-flight-", fileSafe(who_.jobId), "-", fileSafe(who_.commId.substr(who_.commId.rfind('/') + 1)),
               "-r", who_.rank, "-p", ::getpid(), ".txt");
  }
  const std::string text = render(reason);
  Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) failErrno("cannot write the flight recorder to ", file);
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      failErrno("cannot write the flight recorder to ", file);
    }
    done += static_cast<std::size_t>(n);
  }
  return file;
}

}  // namespace kumi
