// A CPU imitation of a GPU for the device path's tests (gpu/device.hpp), on machines without
// one. What it keeps of a GPU is what the device path's logic depends on:
//  - device memory the host cannot touch: its addresses carry a tag bit that makes them
//    non-canonical, so a host read or write of one faults (SIGSEGV; EFAULT in a system call)
//    and the test fails, while the imitation's own work strips the tag;
//  - streams that run their work in order on a thread of their own, later than it was queued
//    (each queue operation waits a random 0..200 us first), so a result read before its
//    ticket finished, or a stream not waited for, shows up as wrong data or a hang;
//  - marks and gates with the semantics of CUDA events and cuStreamWaitValue32;
//  - IPC as CUDA's: device memory lives in a file under /dev/shm (removed at once, kept open),
//    which another process opens through /proc/<pid>/fd and maps, tagged as device memory
//    there too; buffer ids are never reused. IPC events likewise: two counters in a shared file,
//    records numbered when made and marked done when their stream reaches them, a wait holding
//    its stream until the latest record made before it is done (CUDA's semantics), and giving
//    up, as a device failure of the waiting queue, once the event's process has gone.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
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

  class Event : public gpu::IpcEvent {
   public:
    struct Counters {
      std::atomic<std::uint64_t> recorded;  // records made, in host order
      std::atomic<std::uint64_t> done;      // the latest record its stream has reached
    };
    // A new event (owner) in a shared file, or one opened from a peer's handle. The mapping is
    // shared with the stream work that waits on it, which may outlive the object (as CUDA's
    // waits outlive the event they were queued on).
    Event(std::uint64_t id, int fd, pid_t owner) : owner_(owner), id_(id) {
      void* p = ::mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) fail(kumiSystemError, "fake IPC event: mmap: ", std::strerror(errno));
      counters_ = std::shared_ptr<Counters>(static_cast<Counters*>(p), [](Counters* c) { ::munmap(c, sizeof(Counters)); });
      const std::string name = "/proc/" + std::to_string(owner) + "/fd/" + std::to_string(fd) + ":event";
      std::memcpy(handle_.data(), name.data(), std::min(name.size(), handle_.size() - 1));
    }
    // This process's own event opened by handle: the owner's mapping itself, so that a thread
    // sanitizer sees the counters' atomics (a second mapping of the same page would hide them).
    Event(std::shared_ptr<Counters> counters, const std::array<std::byte, 64>& handle, pid_t owner)
        : counters_(std::move(counters)), owner_(owner), handle_(handle), id_(0) {}
    ~Event() override {
      if (fd_ >= 0) ::close(fd_);
    }
    const std::array<std::byte, 64>& handle() const override { return handle_; }
    std::uint64_t id() const override { return id_; }
    void synchronize() override {
      if (!waitDone(counters_, owner_, counters_->recorded.load()))
        fail(kumiSystemError, "fake IPC event: its process ", owner_, " has gone");
    }
    // Spins until record `want` is done; false once the owner is gone with it still undone.
    static bool waitDone(const std::shared_ptr<Counters>& c, pid_t owner, std::uint64_t want) {
      for (int polls = 0; c->done.load() < want; ++polls) {
        if (polls % 1000 == 999 && ::kill(owner, 0) != 0 && errno == ESRCH) return c->done.load() >= want;
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      return true;
    }
    std::shared_ptr<Counters> counters_;
    pid_t owner_;
    int fd_ = -1;  // the owner's file (a peer's copy is closed once mapped)

   private:
    std::array<std::byte, 64> handle_{};
    std::uint64_t id_;
  };

  class Queue : public gpu::WorkQueue {
   public:
    explicit Queue(FakeDevice& d) : device_(d) {}
    ~Queue() override { drain(); }
    Ticket copy(void* dst, const void* src, std::size_t bytes) override {
      if (device_.kindOf(dst) == gpu::MemoryKind::Host) device_.toHost.fetch_add(1);
      if (device_.kindOf(src) == gpu::MemoryKind::Host) device_.fromHost.fetch_add(1);
      return later([=] { std::memmove(real(dst), real(src), bytes); });
    }
    Ticket reduce(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n) override {
      if (device_.kindOf(b) == gpu::MemoryKind::Host) device_.fromHost.fetch_add(1);
      return later([=] {
        reduceBuffers(type, op, static_cast<std::byte*>(real(dst)), static_cast<const std::byte*>(real(a)),
                      static_cast<const std::byte*>(real(b)), n);
      });
    }
    Ticket divide(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor) override {
      return later([=] { divideInPlace(type, static_cast<std::byte*>(real(dst)), n, divisor); });
    }
    Ticket finished() override {
      if (failed_.load()) fail(kumiSystemError, "fake device: a queue waited for an IPC event whose process has gone");
      return finished_.load();
    }
    void waitFor(const gpu::StreamMark& mark) override {
      auto reached = static_cast<const Mark&>(mark).reached;
      stream_.enqueue([reached] {
        while (!reached->load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
      });
    }
    void record(gpu::IpcEvent& event) override {
      auto c = static_cast<Event&>(event).counters_;
      const std::uint64_t g = c->recorded.fetch_add(1) + 1;
      device_.eventRecords.fetch_add(1);
      const int delayUs = device_.delayUs();
      stream_.enqueue([c, g, delayUs] {
        std::this_thread::sleep_for(std::chrono::microseconds(delayUs));
        std::uint64_t seen = c->done.load();
        while (seen < g && !c->done.compare_exchange_weak(seen, g)) {
        }
      });
    }
    void waitFor(const gpu::IpcEvent& event) override {
      const auto& e = static_cast<const Event&>(event);
      const std::uint64_t want = e.counters_->recorded.load();
      device_.eventWaits.fetch_add(1);
      stream_.enqueue([this, c = e.counters_, owner = e.owner_, want] {
        if (!Event::waitDone(c, owner, want)) failed_.store(true);
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
    std::atomic<bool> failed_{false};
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
  std::optional<gpu::IpcRef> exportIpc(const void* p) override {
    if (kindOf(p) != gpu::MemoryKind::Device || !ipc) return std::nullopt;
    std::lock_guard<std::mutex> lock(allocations().mutex);
    const auto v = reinterpret_cast<std::uintptr_t>(real(p));
    for (const auto& [base, a] : allocations().byBase)
      if (v >= base && v < base + a.bytes) {
        gpu::IpcRef ref;
        const std::string name = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(a.fd) + ":" +
                                 std::to_string(a.bytes);
        std::memcpy(ref.handle.data(), name.data(), std::min(name.size(), ref.handle.size() - 1));
        ref.bufferId = a.id;
        ref.offset = v - base;
        exports.fetch_add(1);
        return ref;
      }
    return std::nullopt;
  }
  std::vector<std::string> readableGpus(int) override { return readable; }
  // GPUDirect RDMA as a peer-memory module gives it: the NIC pins the pages behind the tag.
  gpu::NicAccess nicAccess(int) override {
    gpu::NicAccess a;
    a.dmabuf = offerDmabuf;  // but exportDmabuf has none to give: a registration falls back
    if (!offerDmabuf) a.noDmabuf = "the CPU imitation exports no dma-bufs";
    a.peerMemory = nicReadable;
    if (!nicReadable) a.noPeerMemory = "the test took peer memory away";
    a.seesNicWrites = true;  // host memory: what the NIC wrote is there once its completion is seen
    return a;
  }
  void flushNicWrites(int) override { nicFlushes.fetch_add(1); }
  gpu::DmaBuf exportDmabuf(const void*, std::size_t) override { return {}; }
  void* peerMemoryAddress(void* p) override {
    nicPins.fetch_add(1);
    return real(p);
  }
  gpu::Memory openIpc(const std::array<std::byte, 64>& handle) override {
    const std::string h(reinterpret_cast<const char*>(handle.data()), strnlen(reinterpret_cast<const char*>(handle.data()), handle.size()));
    const auto colon = h.rfind(':');
    if (colon == std::string::npos) fail(kumiSystemError, "fake IPC: malformed handle '", h, "'");
    const std::size_t bytes = std::stoull(h.substr(colon + 1));
    const int fd = ::open(h.substr(0, colon).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail(kumiSystemError, "fake IPC: cannot open ", h.substr(0, colon), ": ", std::strerror(errno));
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) fail(kumiSystemError, "fake IPC: cannot map ", h, ": ", std::strerror(errno));
    opened.fetch_add(1);
    auto* t = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p) | kDeviceTag);
    return gpu::Memory(t, [this, bytes](std::byte* q) {
      ::munmap(real(q), bytes);
      closed.fetch_add(1);
    });
  }

  std::unique_ptr<gpu::IpcEvent> newIpcEvent(int) override {
    if (!ipcEvents) return nullptr;
    char name[] = "/dev/shm/kumi-fakeevent-XXXXXX";
    const int fd = ::mkostemp(name, O_CLOEXEC);
    if (fd < 0) fail(kumiSystemError, "fake IPC event: mkostemp: ", std::strerror(errno));
    ::unlink(name);
    if (::ftruncate(fd, sizeof(Event::Counters)) != 0) {
      ::close(fd);
      fail(kumiSystemError, "fake IPC event: ftruncate");
    }
    auto e = std::make_unique<Event>(++nextEventId_, fd, ::getpid());
    e->fd_ = fd;
    std::lock_guard<std::mutex> lock(ownEvents().mutex);
    ownEvents().byHandle[e->handle()] = e->counters_;
    return e;
  }
  std::unique_ptr<gpu::IpcEvent> openIpcEvent(const std::array<std::byte, 64>& handle) override {
    const std::string h(reinterpret_cast<const char*>(handle.data()), strnlen(reinterpret_cast<const char*>(handle.data()), handle.size()));
    const auto colon = h.rfind(":event");
    const auto slash = h.find('/', 6);
    if (colon == std::string::npos || h.rfind("/proc/", 0) != 0 || slash == std::string::npos)
      fail(kumiSystemError, "fake IPC event: malformed handle '", h, "'");
    const int fd = ::open(h.substr(0, colon).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail(kumiSystemError, "fake IPC event: cannot open ", h.substr(0, colon), ": ", std::strerror(errno));
    const pid_t owner = static_cast<pid_t>(std::stol(h.substr(6, slash - 6)));
    if (owner == ::getpid()) {
      std::lock_guard<std::mutex> lock(ownEvents().mutex);
      auto it = ownEvents().byHandle.find(handle);
      if (auto counters = it == ownEvents().byHandle.end() ? nullptr : it->second.lock()) {
        ::close(fd);
        eventsOpened.fetch_add(1);
        return std::make_unique<Event>(std::move(counters), handle, owner);
      }
    }
    auto e = std::make_unique<Event>(0, fd, owner);
    ::close(fd);
    eventsOpened.fetch_add(1);
    return e;
  }

  // A stream given as a kumiStream_t; NULL is the default stream.
  static FakeStream& stream(void* s) { return s ? *static_cast<FakeStream*>(s) : instanceDefault(); }
  int delayUs() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::uniform_int_distribution<int>(0, maxDelayUs)(rng_);
  }

  std::atomic<long> ops{0};               // queue operations run
  std::atomic<long> pinnedAllocations{0};  // hostMemory calls
  std::atomic<long> exports{0}, opened{0}, closed{0};  // IPC
  std::atomic<long> nicPins{0};                       // GPUDirect RDMA registrations
  std::atomic<long> nicFlushes{0};                    // flushNicWrites calls
  std::atomic<long> toHost{0}, fromHost{0};  // queue copies (and reductions) through host memory: staging
  std::atomic<long> eventRecords{0}, eventWaits{0}, eventsOpened{0};  // IPC events
  int maxDelayUs = 200;
  bool ipc = true;  // false: exportIpc refuses, as for memory CUDA cannot share
  bool ipcEvents = true;  // false: no IPC events, as on a device without them
  bool nicReadable = true;   // false: no peer memory for the NIC (GPUDirect RDMA)
  bool offerDmabuf = false;  // true: says it has dma-buf, then exports none (the fallback's test)
  // This process's GPU, then those it can read: every process shares one imitated GPU unless a
  // test says otherwise.
  std::vector<std::string> readable{"0000:00:00.0"};

 private:
  static std::size_t round(std::size_t bytes) { return (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64; }
  struct Allocation {
    int fd;
    std::size_t bytes;
    std::uint64_t id;
  };
  struct Allocations {
    std::mutex mutex;
    std::map<std::uintptr_t, Allocation> byBase;
    std::uint64_t nextId = 1;
  };
  struct OwnEvents {
    std::mutex mutex;
    std::map<std::array<std::byte, 64>, std::weak_ptr<Event::Counters>> byHandle;
  };
  static OwnEvents& ownEvents() {
    static OwnEvents e;  // test-only: the imitated driver's table of this process's events
    return e;
  }
  static Allocations& allocations() {
    static Allocations a;  // test-only: the imitated driver's table of allocations
    return a;
  }
  // Device memory in a shared file so that other processes can map it (IPC); managed memory
  // needs no sharing.
  static gpu::Memory tagged(std::size_t bytes, std::uintptr_t tag) {
    const std::size_t size = round(bytes);
    if (tag != kDeviceTag) {
      void* p = std::aligned_alloc(64, size);
      auto* t = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p) | tag);
      return gpu::Memory(t, [](std::byte* q) { std::free(real(q)); });
    }
    char name[] = "/dev/shm/kumi-fakedev-XXXXXX";
    const int fd = ::mkostemp(name, O_CLOEXEC);
    if (fd < 0) fail(kumiSystemError, "fake device memory: mkostemp: ", std::strerror(errno));
    ::unlink(name);
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) fail(kumiSystemError, "fake device memory: ftruncate");
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) fail(kumiSystemError, "fake device memory: mmap: ", std::strerror(errno));
    {
      std::lock_guard<std::mutex> lock(allocations().mutex);
      allocations().byBase[reinterpret_cast<std::uintptr_t>(p)] = {fd, size, allocations().nextId++};
    }
    auto* t = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p) | tag);
    return gpu::Memory(t, [size](std::byte* q) {
      void* base = real(q);
      int owned = -1;
      {
        std::lock_guard<std::mutex> lock(allocations().mutex);
        auto it = allocations().byBase.find(reinterpret_cast<std::uintptr_t>(base));
        if (it != allocations().byBase.end()) {
          owned = it->second.fd;
          allocations().byBase.erase(it);
        }
      }
      ::munmap(base, size);
      if (owned >= 0) ::close(owned);
    });
  }
  static FakeStream& instanceDefault() {
    static FakeStream s;  // test-only: CUDA's legacy default stream has process lifetime too
    return s;
  }
  std::mutex mutex_;
  std::atomic<std::uint64_t> nextEventId_{0};
  std::map<std::thread::id, int> current_;
  std::mt19937 rng_{12345};
};

}  // namespace kumi::test
