// Runs one rank's prepared schedule over a transport: steps start in channel order, sends and
// plain receives once their dependencies are done; receives that reduce land at once in a small
// per-channel pool of staging buffers and reduce when their dependencies are done (so no rank
// waits for its own send to drain before reading, whatever the socket buffer sizes). The loop
// blocks in the transport when nothing moves, so co-located ranks are not starved.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/prepared.hpp"
#include "transports/transport.hpp"

namespace kumi {

struct ExecParams {
  kumiDataType_t type;
  kumiRedOp_t op;
  int worldSize;
  // Seconds the call may wait; the clock starts when it first has to (a call that never waits
  // never reads the clock), unless the caller started it already.
  double timeoutSeconds = 600;
  const std::atomic<bool>* abortFlag = nullptr;
  std::function<std::string(int)> peerName;  // for messages
  int spinBeforeBlock = 8;                   // idle polls (yielding) before blocking
  int busyPolls = 0;                         // idle polls before those, without yielding
  std::optional<Deadline> deadline;          // set when the caller's clock already runs
  // Called about once a second while the call is blocked (e.g. to look for a failure another
  // rank posted); may throw to end the call.
  std::function<void()> onLongWait;
};

class Executor {
 public:
  // Throws kumi::Error (timeout, abort, peer failure); the caller decorates it with the op.
  // transport may be null when the schedule has only local steps (a world of one).
  void run(const PreparedSchedule& ps, const Buffers& bufs, Transport* transport, const ExecParams& params);
  std::byte* scratch(std::size_t bytes);

 private:
  std::vector<std::vector<std::byte>> staging_;
  std::vector<std::byte> scratch_;
  // Per-run state, kept to reuse capacity.
  std::vector<std::uint32_t> remaining_;
  std::vector<char> ready_;
  std::vector<char> received_;
  std::vector<std::size_t> head_;
  std::vector<Request> requests_;
  std::vector<int> stagingOf_;
  std::vector<std::vector<int>> freeStaging_;  // per channel
  std::vector<Request*> completed_;
  std::vector<std::uint32_t> work_;
};

}  // namespace kumi
