// The flight recorder: the last N operations of a communicator (call, algorithm, peers, bytes,
// state, times), kept in a fixed ring so that recording costs two clock reads and a few stores
// per call. Written to the log and a file when an operation fails, and on demand
// (kumiCommDumpFlightRecorder, or the signal named by KUMI_FLIGHT_RECORDER_SIGNAL). Its own
// lock, not the communicator's: a dump must work while a collective hangs.
// docs/RELIABILITY.md explains how to read a dump.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "transports/transport.hpp"

namespace kumi {

class FlightRecorder {
 public:
  // Who this recorder belongs to, for the dump's header and file name.
  struct Identity {
    std::string commId;
    std::string jobId;
    int rank = 0;
    int size = 1;
    std::string host;
  };
  FlightRecorder(std::size_t capacity, Identity who, std::string dir);

  enum class State : std::uint8_t { Running, Done, Failed };
  // Records a call as running; returns its handle for finish().
  std::uint64_t begin(const CallStamp& stamp, const char* algorithm, const std::vector<int>& peers, std::uint64_t bytes);
  void finish(std::uint64_t handle, State state);

  // The dump as text: a header naming the communicator and `reason`, then one line per call,
  // oldest first. lastLines > 0 keeps only that many calls.
  std::string render(const std::string& reason, std::size_t lastLines = 0) const;
  // Writes render(reason) to path, or when path is empty to the configured directory under a
  // name made of job, communicator, rank and pid; returns the path, or "" with no directory.
  std::string write(const std::string& reason, const std::string& path = "") const;

  const Identity& identity() const { return who_; }

 private:
  static constexpr std::size_t kPeersKept = 6;
  struct Entry {
    std::uint64_t id = 0;  // 1-based call number in this process; 0 = empty
    CallStamp stamp;
    const char* algorithm = "";
    std::uint64_t bytes = 0;
    std::int32_t peers[kPeersKept] = {};
    std::uint32_t peerCount = 0;
    State state = State::Running;
    std::chrono::system_clock::time_point wallStart;
    std::chrono::steady_clock::time_point start, end;
  };
  mutable std::mutex mutex_;
  std::vector<Entry> ring_;
  std::uint64_t next_ = 1;
  Identity who_;
  std::string dir_;
};

}  // namespace kumi
