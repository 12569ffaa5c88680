// Drives transports in a test as the executor does, until every request is complete: move
// bytes, then collect events (TCP learns readiness only from them), blocking briefly when
// nothing moved. Throws what the transports throw, or kumiTimeout.
#pragma once

#include <vector>

#include "core/error.hpp"
#include "transports/transport.hpp"

namespace kumi::test {

inline void drive(const std::vector<Transport*>& transports, const std::vector<Request*>& requests, double seconds = 20) {
  const auto deadline = Deadline::after(seconds);
  std::vector<Request*> done;
  auto pending = [&] {
    for (auto* r : requests)
      if (r->partsLeft > 0) return true;
    return false;
  };
  while (pending()) {
    bool moved = false;
    for (auto* t : transports) moved = t->progress(done) || moved;
    for (auto* t : transports) t->waitForEvents(moved ? 0 : 1);
    if (deadline.expired()) fail(kumiTimeout, "test drive timed out");
  }
}

}  // namespace kumi::test
