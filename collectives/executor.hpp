// Runs one rank's prepared schedule over a transport: steps start in channel order, sends and
// plain receives once their dependencies are done; receives that reduce land at once in a small
// per-channel pool of staging buffers and reduce when their dependencies are done (so no rank
// waits for its own send to drain before reading, whatever the socket buffer sizes). The loop
// blocks in the transport when nothing moves, so co-located ranks are not starved.
#pragma once

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
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

// How a progress loop waits when nothing moved: a few polls without yielding (peers on this host
// with a core each), then polls that yield the CPU, then blocking in the transport; the clock
// starts at the first wait; about once a second of blocking, ExecParams::onLongWait runs.
class IdleWait {
 public:
  explicit IdleWait(const ExecParams& p) : p_(p), deadline_(p.deadline.value_or(Deadline{})), deadlineSet_(p.deadline.has_value()) {}
  void moved() { idle_ = 0; }
  // Nothing moved. Throws kumiAborted on abort; calls timedOut() (which must throw) once the
  // deadline passed. mayBlock false: device work is pending, so never block past a poll.
  template <class TimedOut>
  void wait(Transport* tp, bool mayBlock, TimedOut&& timedOut);
  void checkAbort() const;

 private:
  const ExecParams& p_;
  int idle_ = 0;
  Deadline deadline_;
  bool deadlineSet_;
  Deadline::Clock::time_point lastLongWaitCheck_{};  // from the first block on
  bool longWaitClock_ = false;
};

// The timeout of a call: which peers the unfinished steps wait for (receives) or send to.
[[noreturn]] void failStuck(const PreparedSchedule& ps, const ExecParams& p, std::size_t unfinished,
                            const std::function<bool(std::uint32_t)>& pending);

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

inline void IdleWait::checkAbort() const {
  if (p_.abortFlag && p_.abortFlag->load(std::memory_order_relaxed))
    fail(kumiAborted, "the communicator was aborted (kumiCommAbort)");
}

template <class TimedOut>
void IdleWait::wait(Transport* tp, bool mayBlock, TimedOut&& timedOut) {
  // Shared memory: a peer's write shows up in our cache within a fraction of a microsecond,
  // sooner than a sched_yield returns, so look again at once for a few rounds first.
  if (idle_ < INT_MAX / 2) ++idle_;  // saturates: a long wait must keep reaching the deadline check
  if (idle_ <= p_.busyPolls) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    return;
  }
  if (!deadlineSet_) {
    deadline_ = Deadline::after(p_.timeoutSeconds);
    deadlineSet_ = true;
  }
  if (deadline_.expired()) timedOut();
  // Readiness comes only through events (edge-triggered): poll them without blocking for a
  // few rounds, yielding the CPU in between, then block.
  if (!mayBlock || idle_ - p_.busyPolls < p_.spinBeforeBlock) {
    sched_yield();
    if (tp) tp->waitForEvents(0);
    if (mayBlock || !p_.onLongWait) return;
  } else {
    tp->waitForEvents(std::min(deadline_.msLeft(), 200));
  }
  if (p_.onLongWait) {
    const auto now = Deadline::Clock::now();
    if (!longWaitClock_) {
      lastLongWaitCheck_ = now;
      longWaitClock_ = true;
    }
    if (now - lastLongWaitCheck_ >= std::chrono::seconds(1)) {
      lastLongWaitCheck_ = now;
      p_.onLongWait();
    }
  }
}

}  // namespace kumi
