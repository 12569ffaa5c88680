// Rate limiting for warnings that strangers can trigger (refused connections, garbage on a
// port): a flood must not turn the log into the attack. A burst per window is logged; the next
// line logged after that says how many were suppressed in between.
#pragma once

#include <chrono>
#include <cstddef>

namespace kumi {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimiter(std::size_t burst = 5, Clock::duration window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}

  // Whether to log this event now. When it returns true after a quiet spell, *suppressed says
  // how many events were dropped since the last one logged (to append to the line). One thread.
  bool allow(std::size_t* suppressed) {
    const auto now = Clock::now();
    if (now - windowStart_ >= window_) {
      windowStart_ = now;
      inWindow_ = 0;
    }
    if (inWindow_ < burst_) {
      ++inWindow_;
      *suppressed = suppressed_;
      suppressed_ = 0;
      return true;
    }
    ++suppressed_;
    return false;
  }

 private:
  std::size_t burst_;
  Clock::duration window_;
  Clock::time_point windowStart_{};
  std::size_t inWindow_ = 0;
  std::size_t suppressed_ = 0;
};

}  // namespace kumi
