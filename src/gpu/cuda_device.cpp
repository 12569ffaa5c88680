// gpu::Device on CUDA. kumi's work runs on a non-blocking stream of its own per communicator;
// each queued operation records an event from a pool, whose completion the host polls. A call
// starts after the caller's stream's earlier work through an event recorded on that stream, and
// the stream's later work waits on a counter in mapped pinned memory that the host raises when
// the call is over: cuStreamWaitValue32 (the driver's, reached through the runtime, so nothing
// links libcuda), or a one-thread polling kernel where the driver lacks it.
#include <cuda.h>  // driver types of the entry points reached through the runtime
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/env.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "gpu/copy_choice.hpp"
#include "gpu/copy_kernel.hpp"
#include "gpu/cuda_device.hpp"
#include "gpu/peer_memory.hpp"
#include "gpu/reduce_device.hpp"
#include "gpu/runtime.hpp"
#include "gpu/wait_kernel.hpp"

namespace kumi::gpu {
namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // a non-sticky error must not be reported again by the next call
  fail(kumiSystemError, "CUDA: ", what, ": ", cudaGetErrorString(e));
}

cudaEvent_t newEvent() {
  cudaEvent_t ev = nullptr;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "creating an event");
  return ev;
}

class CudaMark final : public StreamMark {
 public:
  explicit CudaMark(cudaStream_t stream) : event(newEvent()) {
    const cudaError_t e = cudaEventRecord(event, stream);
    if (e != cudaSuccess) {
      cudaEventDestroy(event);
      check(e, "recording an event on the caller's stream");
    }
  }
  ~CudaMark() override { cudaEventDestroy(event); }  // released by CUDA once it has happened
  cudaEvent_t event;
};

// An event other processes may wait for (interprocess events have no timing), made here or
// opened from a peer's handle; destroyed with the object either way.
class CudaIpcEvent final : public IpcEvent {
 public:
  CudaIpcEvent(cudaEvent_t event, const std::array<std::byte, 64>& handle, std::uint64_t id)
      : event(event), handle_(handle), id_(id) {}
  ~CudaIpcEvent() override { cudaEventDestroy(event); }
  const std::array<std::byte, 64>& handle() const override { return handle_; }
  std::uint64_t id() const override { return id_; }
  void synchronize() override { check(cudaEventSynchronize(event), "waiting for a peer's IPC event"); }
  cudaEvent_t event;

 private:
  std::array<std::byte, 64> handle_;
  std::uint64_t id_;
};

class CudaQueue final : public WorkQueue {
 public:
  explicit CudaQueue(CopyChoice copies) : copies_(std::move(copies)) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating kumi's stream");
  }
  ~CudaQueue() override {
    drain();
    for (auto& [t, ev] : pending_) cudaEventDestroy(ev);
    for (cudaEvent_t ev : free_) cudaEventDestroy(ev);
    cudaStreamDestroy(stream_);
  }
  Ticket copy(void* dst, const void* src, std::size_t bytes) override {
    // The kernel where it measured faster at this size, for aligned device-to-device copies (a
    // peer's memory mapped here is device memory too); the engine for the rest and for host memory.
    const bool aligned = ((reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src)) & 15u) == 0;
    if (bytes > 0 && aligned && copies_.forBytes(bytes) == CopyMethod::Kernel &&
        memoryKindOf(dst) == MemoryKind::Device && memoryKindOf(src) == MemoryKind::Device) {
      copyOnDevice(dst, src, bytes, stream_);
    } else {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "queueing a copy");
    }
    return record();
  }
  Ticket reduce(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n) override {
    reduceOnDevice(type, op, dst, a, b, n, stream_);
    return record();
  }
  Ticket divide(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor) override {
    divideOnDevice(type, dst, n, divisor, stream_);
    return record();
  }
  Ticket finished() override {
    while (!pending_.empty()) {
      const cudaError_t e = cudaEventQuery(pending_.front().second);
      if (e == cudaErrorNotReady) break;
      check(e, "work on kumi's stream");
      done_ = pending_.front().first;
      free_.push_back(pending_.front().second);
      pending_.pop_front();
    }
    return done_;
  }
  void waitFor(const StreamMark& mark) override {
    check(cudaStreamWaitEvent(stream_, static_cast<const CudaMark&>(mark).event, 0), "ordering after the caller's stream");
  }
  void record(IpcEvent& event) override {
    check(cudaEventRecord(static_cast<CudaIpcEvent&>(event).event, stream_), "recording an IPC event");
  }
  void waitFor(const IpcEvent& event) override {
    check(cudaStreamWaitEvent(stream_, static_cast<const CudaIpcEvent&>(event).event, 0), "waiting for a peer's IPC event");
  }
  void drain() override {
    if (cudaStreamSynchronize(stream_) != cudaSuccess) cudaGetLastError();
  }

 private:
  Ticket record() {
    cudaEvent_t ev = nullptr;
    if (free_.empty()) {
      ev = newEvent();
    } else {
      ev = free_.back();
      free_.pop_back();
    }
    const cudaError_t e = cudaEventRecord(ev, stream_);
    if (e != cudaSuccess) {
      free_.push_back(ev);
      check(e, "recording an event on kumi's stream");
    }
    pending_.emplace_back(++issued_, ev);
    return issued_;
  }

  CopyChoice copies_;
  cudaStream_t stream_ = nullptr;
  std::deque<std::pair<Ticket, cudaEvent_t>> pending_;
  std::vector<cudaEvent_t> free_;
  Ticket issued_ = 0, done_ = 0;
};

// Times the copy engine and the copy kernel on the current device at each calibration size
// (best of five after two warm-ups, GPU clock), between two buffers of the largest size.
CopyChoice measureCopies(int device) {
  const std::vector<std::size_t> sizes = copyCalibrationSizes();
  void* a = nullptr;
  void* b = nullptr;
  cudaStream_t s = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  struct Release {
    void*& a;
    void*& b;
    cudaStream_t& s;
    cudaEvent_t& start;
    cudaEvent_t& stop;
    ~Release() {
      if (s) cudaStreamSynchronize(s);
      cudaFree(a);
      cudaFree(b);
      if (start) cudaEventDestroy(start);
      if (stop) cudaEventDestroy(stop);
      if (s) cudaStreamDestroy(s);
      cudaGetLastError();
    }
  } release{a, b, s, start, stop};
  check(cudaMalloc(&a, sizes.back()), "allocating the copy calibration's buffers");
  check(cudaMalloc(&b, sizes.back()), "allocating the copy calibration's buffers");
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "creating the copy calibration's stream");
  check(cudaEventCreate(&start), "creating a timing event");
  check(cudaEventCreate(&stop), "creating a timing event");
  auto best = [&](auto&& launch) {
    float fastest = 0;
    for (int k = 0; k < 7; ++k) {
      check(cudaEventRecord(start, s), "timing a copy");
      launch();
      check(cudaEventRecord(stop, s), "timing a copy");
      check(cudaEventSynchronize(stop), "timing a copy");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start, stop), "timing a copy");
      if (k >= 2 && (fastest == 0 || ms < fastest)) fastest = ms;
    }
    return 1000.0 * fastest;
  };
  std::vector<CopyTiming> timings;
  for (std::size_t bytes : sizes) {
    CopyTiming t;
    t.bytes = bytes;
    t.engineUs = best([&] { check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s), "timing the copy engine"); });
    t.kernelUs = best([&] { copyOnDevice(b, a, bytes, s); });
    timings.push_back(t);
  }
  CopyChoice choice = CopyChoice::fromTimings(timings);
  std::string detail;
  for (const CopyTiming& t : timings) detail += cat(detail.empty() ? "" : ", ", t.bytes >> 10, " KiB ", t.engineUs, "/", t.kernelUs, " us");
  KUMI_INFO("CUDA: GPU ", device, " copies device memory by ", choice.describe(), " (engine/kernel: ", detail, ")");
  return choice;
}

using WaitValue32 = CUresult (*)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

void* driverFunction(const char* name);

WaitValue32 driverWaitValue32() {
  void* fn = driverFunction("cuStreamWaitValue32");
  if (fn == nullptr) {
    KUMI_INFO("CUDA: the driver offers no cuStreamWaitValue32; callers' streams wait in a polling kernel");
    return nullptr;
  }
  return reinterpret_cast<WaitValue32>(fn);
}

class CudaGates final : public StreamGates {
 public:
  CudaGates() : wait_(driverWaitValue32()) {
    void* p = nullptr;
    check(cudaHostAlloc(&p, 64, cudaHostAllocMapped | cudaHostAllocPortable), "allocating the stream counter");
    counter_ = static_cast<std::uint32_t*>(p);
    __atomic_store_n(counter_, 0u, __ATOMIC_SEQ_CST);
    const cudaError_t e = cudaHostGetDevicePointer(&deviceCounter_, p, 0);
    if (e != cudaSuccess) {
      cudaFreeHost(p);
      check(e, "mapping the stream counter");
    }
  }
  ~CudaGates() override {
    // A stream may not have read the counter yet even though it was raised: free it only once
    // every held stream has passed it, else leave it (a few bytes) rather than let a GPU read
    // freed memory.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::lock_guard<std::mutex> lock(mutex_);
    bool passed = true;
    for (cudaEvent_t ev : passed_) {
      cudaError_t e;
      while ((e = cudaEventQuery(ev)) == cudaErrorNotReady && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      passed = passed && e != cudaErrorNotReady;
      cudaEventDestroy(ev);
    }
    if (passed)
      cudaFreeHost(counter_);
    else
      KUMI_WARN("CUDA: a caller's stream has not passed kumi's counter 30 s after the communicator ended; its 64 "
                "bytes of pinned memory are left allocated");
  }
  void hold(void* stream, std::uint32_t call) override {
    auto s = static_cast<cudaStream_t>(stream);
    CUresult r = CUDA_ERROR_NOT_SUPPORTED;
    if (wait_) {
      r = wait_(reinterpret_cast<CUstream>(s), reinterpret_cast<CUdeviceptr>(deviceCounter_), call,
                CU_STREAM_WAIT_VALUE_GEQ);
      if (r == CUDA_ERROR_NOT_SUPPORTED) {
        // Stream memory operations disabled (older drivers, some virtualised GPUs): poll instead.
        KUMI_INFO("CUDA: cuStreamWaitValue32 is not supported here; callers' streams wait in a polling kernel");
        wait_ = nullptr;
      } else if (r != CUDA_SUCCESS) {
        fail(kumiSystemError, "CUDA: cuStreamWaitValue32 on the caller's stream failed (CUresult ", static_cast<int>(r), ")");
      }
    }
    if (r != CUDA_SUCCESS) launchWaitKernel(deviceCounter_, call, s);
    cudaEvent_t ev = newEvent();
    const cudaError_t e = cudaEventRecord(ev, s);
    std::lock_guard<std::mutex> lock(mutex_);
    if (e != cudaSuccess) {
      cudaEventDestroy(ev);
      check(e, "recording an event on the caller's stream");
    }
    // Forget the streams that have moved on.
    while (!passed_.empty() && cudaEventQuery(passed_.front()) == cudaSuccess) {
      cudaEventDestroy(passed_.front());
      passed_.pop_front();
    }
    passed_.push_back(ev);
  }
  void release(std::uint32_t call) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (static_cast<std::int32_t>(call - released_) <= 0) return;
    released_ = call;
    __atomic_store_n(counter_, call, __ATOMIC_SEQ_CST);
  }

 private:
  WaitValue32 wait_;
  std::uint32_t* counter_ = nullptr;
  void* deviceCounter_ = nullptr;
  std::mutex mutex_;
  std::uint32_t released_ = 0;
  std::deque<cudaEvent_t> passed_;  // one per hold: recorded just after the wait
};

// A driver entry point through the runtime (nothing links libcuda); null where the driver has none.
void* driverFunction(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
  const cudaError_t e = cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t e = cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &found);
#endif
  if (e != cudaSuccess || found != cudaDriverEntryPointSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return fn;
}

using GetAddressRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
using DeviceGet = CUresult (*)(CUdevice*, int);
using DeviceGetAttribute = CUresult (*)(int*, CUdevice_attribute, CUdevice);
using GetHandleForAddressRange = CUresult (*)(void*, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
using PointerGetAttribute = CUresult (*)(void*, CUpointer_attribute, CUdeviceptr);

// Exports of this process's allocations by buffer id, so that a buffer sent many times asks the
// driver for its handle once. Bounded: an application that cycles through many allocations
// only costs the driver call again.
class IpcExports {
 public:
  std::optional<IpcRef> find(const void* p) {
    if (!range_ || !attribute_) return std::nullopt;
    unsigned long long id = 0;
    if (attribute_(&id, CU_POINTER_ATTRIBUTE_BUFFER_ID, reinterpret_cast<CUdeviceptr>(p)) != CUDA_SUCCESS) return std::nullopt;
    CUdeviceptr base = 0;
    size_t size = 0;
    if (range_(&base, &size, reinterpret_cast<CUdeviceptr>(p)) != CUDA_SUCCESS) return std::nullopt;
    IpcRef ref;
    ref.bufferId = id;
    ref.offset = reinterpret_cast<CUdeviceptr>(p) - base;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [known, handle] : cache_)
      if (known == id) {
        ref.handle = handle;
        return ref;
      }
    cudaIpcMemHandle_t h{};
    // Memory from cudaMallocAsync pools or cuMemCreate without a shareable handle cannot be
    // exported: the caller stages it instead.
    if (cudaIpcGetMemHandle(&h, reinterpret_cast<void*>(base)) != cudaSuccess) {
      cudaGetLastError();
      return std::nullopt;
    }
    static_assert(sizeof h == sizeof ref.handle, "CUDA's IPC handle is 64 bytes");
    std::memcpy(ref.handle.data(), &h, sizeof h);
    if (cache_.size() >= 256) cache_.erase(cache_.begin());
    cache_.emplace_back(id, ref.handle);
    return ref;
  }

 private:
  GetAddressRange range_ = reinterpret_cast<GetAddressRange>(driverFunction("cuMemGetAddressRange"));
  PointerGetAttribute attribute_ = reinterpret_cast<PointerGetAttribute>(driverFunction("cuPointerGetAttribute"));
  std::mutex mutex_;
  std::vector<std::pair<unsigned long long, std::array<std::byte, 64>>> cache_;
};

class CudaDevice final : public Device {
 public:
  MemoryKind kindOf(const void* p) override { return memoryKindOf(p); }
  int current() override {
    int d = 0;
    check(cudaGetDevice(&d), "reading the current device");
    return d;
  }
  void use(int device) override { check(cudaSetDevice(device), "selecting the communicator's device"); }
  std::unique_ptr<WorkQueue> newQueue(int device) override {
    use(device);
    return std::make_unique<CudaQueue>(copyChoice(device));
  }
  std::unique_ptr<StreamGates> newGates(int device) override {
    use(device);
    return std::make_unique<CudaGates>();
  }
  Memory hostMemory(std::size_t bytes) override {
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(kumiSystemError, "CUDA: allocating ", bytes, " bytes of pinned host memory for staging: ", cudaGetErrorString(e));
    }
    return Memory(static_cast<std::byte*>(p), [](std::byte* q) { cudaFreeHost(q); });
  }
  Memory deviceMemory(int device, std::size_t bytes) override {
    use(device);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(kumiSystemError, "CUDA: allocating ", bytes, " bytes on device ", device, ": ", cudaGetErrorString(e));
    }
    return Memory(static_cast<std::byte*>(p), [](std::byte* q) { cudaFree(q); });
  }
  std::unique_ptr<StreamMark> mark(void* stream) override {
    return std::make_unique<CudaMark>(static_cast<cudaStream_t>(stream));
  }
  void synchronize(void* stream) override {
    check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "waiting for the caller's stream");
  }
  std::shared_ptr<void> newStream() override {
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "creating a stream");
    return std::shared_ptr<void>(s, [](void* x) { cudaStreamDestroy(static_cast<cudaStream_t>(x)); });
  }
  void copyNow(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "copying");
  }
  std::optional<IpcRef> exportIpc(const void* p) override { return exports_.find(p); }
  std::vector<std::string> readableGpus(int device) override {
    std::vector<std::string> out;
    auto busId = [](int d) {
      char buf[32] = {};
      if (cudaDeviceGetPCIBusId(buf, sizeof buf, d) != cudaSuccess) {
        cudaGetLastError();
        return std::string();
      }
      for (char& c : buf) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return std::string(buf);
    };
    out.push_back(busId(device));
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) cudaGetLastError();
    for (int d = 0; d < count; ++d) {
      int ok = 0;
      if (d == device) continue;
      if (cudaDeviceCanAccessPeer(&ok, device, d) != cudaSuccess) cudaGetLastError();
      if (ok) out.push_back(busId(d));
    }
    return out;
  }
  NicAccess nicAccess(int device) override {
    NicAccess a;
    const PeerMemoryModule peer = probePeerMemory();
    a.peerMemory = peer.loaded;
    if (!peer.loaded) a.noPeerMemory = peer.detail;
    CUdevice dev = 0;
    int supported = 0;
    if (!getDevice_ || !getAttribute_ || !getHandle_) {
      a.noDmabuf = "the CUDA driver has no cuMemGetHandleForAddressRange (it needs CUDA 11.7 or later)";
    } else if (getDevice_(&dev, device) != CUDA_SUCCESS ||
               getAttribute_(&supported, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) != CUDA_SUCCESS || !supported) {
      a.noDmabuf = cat("the driver does not export dma-bufs of GPU ", device, "'s memory (open kernel modules and Linux 5.12+ needed)");
    } else {
      a.dmabuf = true;
    }
    // NIC writes the GPU orders natively need nothing; else a flush is needed, and must exist.
    int ordering = 0, flush = 0;
    if (cudaDeviceGetAttribute(&ordering, cudaDevAttrGPUDirectRDMAWritesOrdering, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&flush, cudaDevAttrGPUDirectRDMAFlushWritesOptions, device) != cudaSuccess) {
      cudaGetLastError();
      ordering = flush = 0;
    }
    needsFlush_ = ordering < cudaGPUDirectRDMAWritesOrderingOwner;
    a.seesNicWrites = !needsFlush_ || (flush & cudaFlushGPUDirectRDMAWritesOptionHost) != 0;
    if (!a.seesNicWrites)
      a.noNicWrites = cat("GPU ", device, " neither orders GPUDirect RDMA writes nor can flush them");
    return a;
  }
  void flushNicWrites(int device) override {
    if (!needsFlush_) return;
    use(device);
    check(cudaDeviceFlushGPUDirectRDMAWrites(cudaFlushGPUDirectRDMAWritesTargetCurrentDevice,
                                             cudaFlushGPUDirectRDMAWritesToOwner),
          "flushing GPUDirect RDMA writes");
  }
  DmaBuf exportDmabuf(const void* p, std::size_t bytes) override {
    int fd = -1;
    if (!getHandle_ || getHandle_(&fd, reinterpret_cast<CUdeviceptr>(p), bytes, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) !=
                           CUDA_SUCCESS)
      return {};
    return {fd, 0};  // the fd is exactly the range
  }
  Memory openIpc(const std::array<std::byte, 64>& handle) override {
    cudaIpcMemHandle_t h{};
    std::memcpy(&h, handle.data(), sizeof h);
    void* p = nullptr;
    // Lazy peer access: CUDA enables it between two GPUs only if the hardware allows, and
    // reaches the peer's memory through the host otherwise; on the same GPU nothing is needed.
    const cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(kumiSystemError, "CUDA: opening a peer process's device memory (cudaIpcOpenMemHandle): ", cudaGetErrorString(e));
    }
    return Memory(static_cast<std::byte*>(p), [](std::byte* q) { cudaIpcCloseMemHandle(q); });
  }
  std::unique_ptr<IpcEvent> newIpcEvent(int device) override {
    int supported = 0;
    if (cudaDeviceGetAttribute(&supported, cudaDevAttrIpcEventSupport, device) != cudaSuccess) {
      cudaGetLastError();
      supported = 0;
    }
    if (!supported) return nullptr;
    use(device);
    cudaEvent_t ev = nullptr;
    check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventInterprocess), "creating an IPC event");
    cudaIpcEventHandle_t h{};
    if (const cudaError_t e = cudaIpcGetEventHandle(&h, ev); e != cudaSuccess) {
      cudaEventDestroy(ev);
      cudaGetLastError();
      return nullptr;  // names are then ordered through the host
    }
    std::array<std::byte, 64> handle{};
    static_assert(sizeof h <= sizeof handle);
    std::memcpy(handle.data(), &h, sizeof h);
    return std::make_unique<CudaIpcEvent>(ev, handle, ++events_);
  }
  std::unique_ptr<IpcEvent> openIpcEvent(const std::array<std::byte, 64>& handle) override {
    cudaIpcEventHandle_t h{};
    std::memcpy(&h, handle.data(), sizeof h);
    cudaEvent_t ev = nullptr;
    check(cudaIpcOpenEventHandle(&ev, h), "opening a peer process's IPC event (cudaIpcOpenEventHandle)");
    return std::make_unique<CudaIpcEvent>(ev, handle, 0);
  }

 private:
  // KUMI_CUDA_COPY, then per device what was measured (once per process and GPU, at its first
  // queue; a measurement that fails leaves the engine, the CUDA default).
  const CopyChoice& copyChoice(int device) {
    std::lock_guard<std::mutex> lock(copyMutex_);
    for (const auto& [d, c] : copyChoices_)
      if (d == device) return c;
    const CopyPolicy policy = parseCopyPolicy(envString("KUMI_CUDA_COPY").value_or("auto"));
    CopyChoice c;
    if (policy == CopyPolicy::Kernel) c = CopyChoice::fixed(CopyMethod::Kernel);
    if (policy == CopyPolicy::Auto) {
      try {
        c = measureCopies(device);
      } catch (const Error& e) {
        KUMI_WARN("CUDA: could not compare the copy engine with the copy kernel on GPU ", device, ": ", e.what(),
                  "; copies use the engine");
      }
    }
    copyChoices_.emplace_back(device, std::move(c));
    return copyChoices_.back().second;
  }

  IpcExports exports_;
  std::atomic<std::uint64_t> events_{0};  // ids of the IPC events made here
  std::mutex copyMutex_;
  std::deque<std::pair<int, CopyChoice>> copyChoices_;  // a deque: references stay valid as it grows
  DeviceGet getDevice_ = reinterpret_cast<DeviceGet>(driverFunction("cuDeviceGet"));
  DeviceGetAttribute getAttribute_ = reinterpret_cast<DeviceGetAttribute>(driverFunction("cuDeviceGetAttribute"));
  bool needsFlush_ = true;  // until nicAccess has asked the device
  GetHandleForAddressRange getHandle_ =
      reinterpret_cast<GetHandleForAddressRange>(driverFunction("cuMemGetHandleForAddressRange"));
};

}  // namespace

std::shared_ptr<Device> makeCudaDevice(std::string* why) {
  if (!available(why)) return nullptr;
  return std::make_shared<CudaDevice>();
}

}  // namespace kumi::gpu
