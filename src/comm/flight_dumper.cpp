#include "comm/flight_dumper.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/flight_recorder.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "core/socket.hpp"

namespace kumi {
namespace {

// The one piece of state a signal handler can reach: the dumper's pipe. Set once, before the
// handler is installed, by the registry's dumper service.
std::atomic<int> signalPipeWriteEnd{-1};

void onDumpSignal(int) {
  const int saved = errno;
  const int fd = signalPipeWriteEnd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char b = 1;
    [[maybe_unused]] auto n = ::write(fd, &b, 1);
  }
  errno = saved;
}

class Dumper {
 public:
  explicit Dumper(int signal) : signal_(signal) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) failErrno("flight recorder: pipe");
    read_ = Fd(fds[0]);
    write_ = Fd(fds[1]);
    ::fcntl(read_.get(), F_SETFL, 0);  // the thread blocks on it
    signalPipeWriteEnd.store(write_.get());
    thread_ = std::thread([this] { loop(); });
    struct sigaction sa {};
    sa.sa_handler = onDumpSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (::sigaction(signal_, &sa, nullptr) != 0) failErrno("flight recorder: sigaction(", signal_, ")");
  }
  ~Dumper() {
    ::signal(signal_, SIG_DFL);
    signalPipeWriteEnd.store(-1);
    write_ = Fd();  // EOF ends the thread
    if (thread_.joinable()) thread_.join();
  }
  Dumper(const Dumper&) = delete;
  Dumper& operator=(const Dumper&) = delete;

  int signal() const { return signal_; }
  void add(const std::shared_ptr<FlightRecorder>& r) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(recorders_, [](const auto& w) { return w.expired(); });
    recorders_.push_back(r);
  }

 private:
  void loop() {
    char b[64];
    for (;;) {
      ssize_t n = ::read(read_.get(), b, sizeof b);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      std::vector<std::shared_ptr<FlightRecorder>> live;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& w : recorders_)
          if (auto r = w.lock()) live.push_back(r);
      }
      const std::string reason = cat("signal ", signal_, " (", ::strsignal(signal_), ")");
      for (const auto& r : live) {
        try {
          const std::string file = r->write(reason);
          if (file.empty()) KUMI_WARN(r->render(reason));
          else KUMI_WARN("rank ", r->identity().rank, ": flight recorder of ", r->identity().commId, " written to ", file);
        } catch (const Error& e) {
          KUMI_WARN(e.what());
        }
      }
    }
  }

  int signal_;
  Fd read_, write_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::weak_ptr<FlightRecorder>> recorders_;
};

}  // namespace

int parseSignal(const std::string& text) {
  std::string t = text;
  if (t.rfind("SIG", 0) == 0) t = t.substr(3);
  if (t == "USR1") return SIGUSR1;
  if (t == "USR2") return SIGUSR2;
  if (!t.empty() && t.find_first_not_of("0123456789") == std::string::npos && t.size() < 4) {
    const int n = std::stoi(t);
    if (n > 0 && n < NSIG && n != SIGKILL && n != SIGSTOP) return n;
  }
  fail(kumiInvalidArgument, "KUMI_FLIGHT_RECORDER_SIGNAL='", text, "': want USR1, USR2 or a signal number");
}

void dumpOnSignal(int signal, const std::shared_ptr<FlightRecorder>& recorder) {
  auto dumper = Registry::instance().service<Dumper>("flight-dumper", [&] { return std::make_shared<Dumper>(signal); });
  if (dumper->signal() != signal)
    KUMI_WARN("KUMI_FLIGHT_RECORDER_SIGNAL changed to ", signal, " after the first communicator took ", dumper->signal(),
              "; dumps stay on ", dumper->signal());
  dumper->add(recorder);
}

}  // namespace kumi
