#include "gpu/runtime.hpp"

#include <cuda_runtime.h>

#include "core/error.hpp"
#include "core/registry.hpp"

namespace kumi::gpu {
namespace {

struct Availability {
  bool ok = false;
  std::string why;
};

Availability probe() {
  Availability a;
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) {
    a.why = cat("CUDA: ", cudaGetErrorString(e),
                e == cudaErrorInsufficientDriver ? " (no NVIDIA driver: libcuda.so.1 not found or too old)" : "");
    cudaGetLastError();  // the error is an answer, not a sticky state for later calls
    return a;
  }
  if (devices == 0) {
    a.why = "CUDA: no device";
    return a;
  }
  a.ok = true;
  return a;
}

}  // namespace

bool built() { return true; }

bool available(std::string* why) {
  const auto a = Registry::instance().service<Availability>("cuda-availability", [] {
    return std::make_shared<Availability>(probe());
  });
  if (!a->ok && why) *why = a->why;
  return a->ok;
}

MemoryKind memoryKindOf(const void* p) {
  if (!available(nullptr) || p == nullptr) return MemoryKind::Host;
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return MemoryKind::Host;  // not known to CUDA: ordinary host memory
  }
  MemoryKind k = MemoryKind::Host;
  if (!memoryKindFromCuda(static_cast<int>(attr.type), &k))
    fail(kumiInvalidArgument, "CUDA reports memory type ", static_cast<int>(attr.type), " for ", p,
         ", which this kumi does not know");
  return k;
}

int multiprocessors() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    fail(kumiSystemError, "CUDA: cannot read the current device's multiprocessor count");
  }
  return count;
}

}  // namespace kumi::gpu
