// A point in time after which a blocking call gives up. Every blocking call takes one.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>

namespace kumi {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  // Seconds are clamped to [0, 1e9] (about 30 years): "inf" means "never", without overflow.
  static Deadline after(double seconds) {
    seconds = seconds > 1e9 ? 1e9 : seconds;
    Deadline d;
    d.at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(std::max(0.0, seconds)));
    return d;
  }
  bool expired() const { return Clock::now() >= at_; }
  // Milliseconds left, rounded up, capped to fit poll()/epoll_wait().
  int msLeft() const {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(at_ - Clock::now()).count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>((left + 999) / 1000, INT_MAX / 2));
  }
  Clock::time_point when() const { return at_; }
  Deadline earlier(const Deadline& other) const { return at_ < other.at_ ? *this : other; }

 private:
  Clock::time_point at_{};
};

}  // namespace kumi
