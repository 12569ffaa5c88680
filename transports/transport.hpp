// The one interface every transport implements (tcp now; shm, cuda_ipc, ibverbs later), shaped
// like a network plugin: connect to peers, post sends and receives of byte ranges, poll for
// completion, block when idle. The executor never knows which transport carries a step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/deadline.hpp"

namespace kumi {

// One posted send or receive. The transport may split it into parts (several sockets or
// queue pairs); it is complete when every part is.
struct Request {
  std::uint32_t step = 0;  // the executor's index of the schedule step
  int partsLeft = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;

  // Ensures connections to these peers exist; collective between each pair. Bounded by deadline.
  virtual void connect(const std::vector<int>& peers, const Deadline& deadline) = 0;

  // Messages to one peer are delivered in posting order and must be matched, in the same order,
  // by receives of the same size; a size mismatch is an error naming both sizes.
  virtual void postSend(int peer, const void* data, std::size_t bytes, Request* req) = 0;
  virtual void postRecv(int peer, void* data, std::size_t bytes, Request* req) = 0;

  // Moves bytes without blocking and appends finished requests to completed. Returns whether
  // anything moved. Throws kumi::Error when a peer fails.
  virtual bool progress(std::vector<Request*>& completed) = 0;

  // Blocks until progress may be possible, interrupt() is called, or timeoutMs passes.
  virtual void waitForEvents(int timeoutMs) = 0;

  // Thread-safe, for abort: interrupts waitForEvents now, and makes a connect in progress (or a
  // later one) fail with kumiAborted.
  virtual void interrupt() = 0;

  // Closes every connection so that peers see the failure at once; no further use.
  virtual void shutdown() = 0;

  // Drops posted requests after a failure, so that buffers they point to may be released.
  virtual void cancelAll() = 0;
};

}  // namespace kumi
