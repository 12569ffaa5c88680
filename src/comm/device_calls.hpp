// Collectives on device buffers, ordered as NCCL orders them: a call returns at once; its work
// starts after what the caller's stream held at the call, and the stream's later work waits
// until it is over. A proxy thread of the communicator runs the calls one at a time, in the
// order they were made (every rank makes them in the same order), through the DeviceExecutor on
// the communicator's work queue. A call that fails still releases its stream (the GPU must not
// hang on a lost result); the failure is the communicator's asynchronous error.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "collectives/device_executor.hpp"
#include "comm/call_args.hpp"
#include "gpu/device.hpp"

namespace kumi {

class DeviceCalls {
 public:
  // Runs one call under the communicator's rules (validation, stamps, deadline, failure story).
  // It orders the queue after the caller's stream (mark) inside its own failure handling.
  using Run = std::function<void(const CallArgs&, const gpu::StreamMark&, DeviceExecutor&, gpu::WorkQueue&)>;
  DeviceCalls(gpu::Device& device, int deviceIndex, Run run);
  // Runs what is queued (each call bounded by the communicator's timeout), then stops.
  ~DeviceCalls();
  DeviceCalls(const DeviceCalls&) = delete;
  DeviceCalls& operator=(const DeviceCalls&) = delete;

  int deviceIndex() const { return deviceIndex_; }
  // From the calling thread: queues the call and holds stream until it is over.
  void enqueue(const CallArgs& a, void* stream);
  // Blocks until every call queued so far is over (a host call, a split or a destroy keeps its
  // place in the order after them).
  void drain();

 private:
  struct Job {
    CallArgs args;
    std::unique_ptr<gpu::StreamMark> mark;
    std::uint32_t call;
  };
  void loop();

  gpu::Device& device_;
  int deviceIndex_;
  Run run_;
  std::unique_ptr<gpu::WorkQueue> queue_;
  std::unique_ptr<gpu::StreamGates> gates_;
  DeviceExecutor executor_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Job> jobs_;
  bool busy_ = false;
  bool stop_ = false;
  std::uint32_t calls_ = 0;  // numbered from 1; wraps (StreamGates compares cyclically)
  std::thread proxy_;        // last: started once everything above exists
};

}  // namespace kumi
