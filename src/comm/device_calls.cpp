#include "comm/device_calls.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

namespace kumi {

DeviceCalls::DeviceCalls(gpu::Device& device, int deviceIndex, Run run)
    : device_(device),
      deviceIndex_(deviceIndex),
      run_(std::move(run)),
      queue_(device.newQueue(deviceIndex)),
      gates_(device.newGates(deviceIndex)),
      executor_(device, deviceIndex),
      proxy_([this] { loop(); }) {}

DeviceCalls::~DeviceCalls() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  proxy_.join();
  queue_->drain();
}

void DeviceCalls::enqueue(const CallArgs& a, void* stream) {
  Job job{a, device_.mark(stream), 0};
  std::lock_guard<std::mutex> lock(mutex_);
  job.call = ++calls_;
  gates_->hold(stream, job.call);  // holds only once the call is sure to be run (and released)
  jobs_.push_back(std::move(job));
  wake_.notify_one();
}

void DeviceCalls::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [&] { return jobs_.empty() && !busy_; });
}

void DeviceCalls::loop() {
  try {
    device_.use(deviceIndex_);
  } catch (const Error& e) {
    KUMI_WARN("device calls: ", e.what());  // each call then fails on its own and says so
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_, with nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    lock.unlock();
    try {
      run_(job.args, *job.mark, executor_, *queue_);
    } catch (const Error&) {
      // The communicator has recorded it (its asynchronous error). Work of the failed call may
      // still be on the queue: let it finish before anything reuses the staging buffers.
      queue_->drain();
    } catch (const std::exception& e) {
      KUMI_WARN("device calls: unexpected failure: ", e.what());
      queue_->drain();
    }
    gates_->release(job.call);
    lock.lock();
    busy_ = false;
    idle_.notify_all();
  }
}

}  // namespace kumi
