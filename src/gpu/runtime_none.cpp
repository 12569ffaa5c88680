// The GPU entry points of a build without CUDA (KUMI_WITH_CUDA=OFF, or no nvcc): no device, and
// every pointer is host memory.
#include "core/error.hpp"
#include "gpu/cuda_device.hpp"
#include "gpu/runtime.hpp"

namespace kumi::gpu {

bool built() { return false; }

bool available(std::string* why) {
  if (why) *why = "kumi was built without CUDA (KUMI_WITH_CUDA=OFF or no nvcc at build time)";
  return false;
}

MemoryKind memoryKindOf(const void*) { return MemoryKind::Host; }

int multiprocessors() { fail(kumiInvalidUsage, "kumi was built without CUDA"); }

std::shared_ptr<Device> makeCudaDevice(std::string* why) {
  available(why);
  return nullptr;
}

}  // namespace kumi::gpu
