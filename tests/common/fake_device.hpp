// A CPU imitation of a GPU for the device path's tests (gpu/device.hpp), on machines without
// one. What it keeps of a GPU is what the device path's logic depends on:
//  - device memory the host cannot touch: its addresses carry a tag bit that makes them
//    non-canonical, so a host read or write of one faults (SIGSEGV; EFAULT in a system call)
//    and the test fails, while the imitation's own work strips the tag;
//  - streams that run their work in order on a thread of their own, later than it was queued
//    (each queue operation waits a random 0..200 us first), so a result read before its
//    ticket finished, or a stream not waited for, shows up as wrong data or a hang;
//  - marks and gates with the semantics of CUDA events and cuStreamWaitValue32.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/reduce.hpp"
#include "gpu/device.hpp"

namespace kumi::test {

class FakeStream {
 public:
  FakeStream() : worker_([this] { loop(); }) {}
  ~FakeStream() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void enqueue(std::function<void()> op) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ops_.push_back(std::move(op));
    }
    cv_.notify_all();
  }
  // Blocks until the work queued so far has run.
  void sync() {
    std::promise<void> done;
    auto f = done.get_future();
    enqueue([&] { done.set_value(); });
    f.wait();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !ops_.empty(); });
      if (ops_.empty()) return;
      auto op = std::move(ops_.front());
      ops_.pop_front();
      lock.unlock();
      op();
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> ops_;
  bool stop_ = false;
  std::thread worker_;
};

class FakeDevice : public gpu::Device {
 public:
  static constexpr std::uintptr_t kDeviceTag = std::uintptr_t(1) << 62;
  static constexpr std::uintptr_t kManagedTag = std::uintptr_t(1) << 61;

  static void* real(const void* p) {
    auto v = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<void*>(v & ~(kDeviceTag | kManagedTag));
  }

  gpu::MemoryKind kindOf(const void* p) override {
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    if (v & kDeviceTag) return gpu::MemoryKind::Device;
    if (v & kManagedTag) return gpu::MemoryKind::Managed;
    return gpu::MemoryKind::Host;
  }
  int current() override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = current_.find(std::this_thread::get_id());
    return it == current_.end() ? 0 : it->second;
  }
  void use(int device) override {
    std::lock_guard<std::mutex> lock(mutex_);
    current_[std::this_thread::get_id()] = device;
  }

  class Mark : public gpu::StreamMark {
   public:
    std::shared_ptr<std::atomic<bool>> reached = std::make_shared<std::atomic<bool>>(false);
  };

  class Queue : public gpu::WorkQueue {
   public:
    explicit Queue(FakeDevice& d) : device_(d) {}
    ~Queue() override { drain(); }
    Ticket copy(void* dst, const void* src, std::size_t bytes) override {
      return later([=] { std::memmove(real(dst), real(src), bytes); });
    }
    Ticket reduce(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n) override {
      return later([=] {
        reduceBuffers(type, op, static_cast<std::byte*>(real(dst)), static_cast<const std::byte*>(real(a)),
                      static_cast<const std::byte*>(real(b)), n);
      });
    }
    Ticket divide(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor) override {
      return later([=] { divideInPlace(type, static_cast<std::byte*>(real(dst)), n, divisor); });
    }
    Ticket finished() override { return finished_.load(); }
    void waitFor(const gpu::StreamMark& mark) override {
      auto reached = static_cast<const Mark&>(mark).reached;
      stream_.enqueue([reached] {
        while (!reached->load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
      });
    }
    void drain() override { stream_.sync(); }

   private:
    Ticket later(std::function<void()> work) {
      const Ticket t = ++issued_;
      const int delayUs = device_.delayUs();
      stream_.enqueue([this, t, delayUs, work = std::move(work)] {
        std::this_thread::sleep_for(std::chrono::microseconds(delayUs));
        work();
        device_.ops.fetch_add(1);
        finished_.store(t);
      });
      return t;
    }
    FakeDevice& device_;
    Ticket issued_ = 0;
    std::atomic<Ticket> finished_{0};
    FakeStream stream_;  // last: its worker stops before the rest goes
  };

  class Gates : public gpu::StreamGates {
   public:
    void hold(void* stream, std::uint32_t call) override {
      auto counter = counter_;
      FakeDevice::stream(stream).enqueue([counter, call] {
        while (static_cast<std::int32_t>(counter->load() - call) < 0)
          std::this_thread::sleep_for(std::chrono::microseconds(50));
      });
    }
    void release(std::uint32_t call) override {
      std::uint32_t seen = counter_->load();
      while (static_cast<std::int32_t>(call - seen) > 0 && !counter_->compare_exchange_weak(seen, call)) {
      }
    }

   private:
    std::shared_ptr<std::atomic<std::uint32_t>> counter_ = std::make_shared<std::atomic<std::uint32_t>>(0);
  };

  std::unique_ptr<gpu::WorkQueue> newQueue(int) override { return std::make_unique<Queue>(*this); }
  std::unique_ptr<gpu::StreamGates> newGates(int) override { return std::make_unique<Gates>(); }
  gpu::Memory hostMemory(std::size_t bytes) override {
    pinnedAllocations.fetch_add(1);
    return gpu::Memory(static_cast<std::byte*>(std::aligned_alloc(64, round(bytes))), [](std::byte* p) { std::free(p); });
  }
  gpu::Memory deviceMemory(int, std::size_t bytes) override { return tagged(bytes, kDeviceTag); }
  gpu::Memory managedMemory(std::size_t bytes) { return tagged(bytes, kManagedTag); }
  std::unique_ptr<gpu::StreamMark> mark(void* s) override {
    auto m = std::make_unique<Mark>();
    auto reached = m->reached;
    stream(s).enqueue([reached] { reached->store(true); });
    return m;
  }
  void synchronize(void* s) override { stream(s).sync(); }
  std::shared_ptr<void> newStream() override { return std::make_shared<FakeStream>(); }
  void copyNow(void* dst, const void* src, std::size_t bytes) override { std::memmove(real(dst), real(src), bytes); }

  // A stream given as a kumiStream_t; NULL is the default stream.
  static FakeStream& stream(void* s) { return s ? *static_cast<FakeStream*>(s) : instanceDefault(); }
  int delayUs() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::uniform_int_distribution<int>(0, maxDelayUs)(rng_);
  }

  std::atomic<long> ops{0};               // queue operations run
  std::atomic<long> pinnedAllocations{0};  // hostMemory calls
  int maxDelayUs = 200;

 private:
  static std::size_t round(std::size_t bytes) { return (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64; }
  static gpu::Memory tagged(std::size_t bytes, std::uintptr_t tag) {
    void* p = std::aligned_alloc(64, round(bytes));
    auto* t = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p) | tag);
    return gpu::Memory(t, [](std::byte* q) { std::free(real(q)); });
  }
  static FakeStream& instanceDefault() {
    static FakeStream s;  // test-only: CUDA's legacy default stream has process lifetime too
    return s;
  }
  std::mutex mutex_;
  std::map<std::thread::id, int> current_;
  std::mt19937 rng_{12345};
};

}  // namespace kumi::test
