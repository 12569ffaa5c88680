#include "gpu/memory_kind.hpp"

#include "core/error.hpp"

namespace kumi::gpu {

const char* memoryKindName(MemoryKind k) {
  switch (k) {
    case MemoryKind::Host: return "host memory";
    case MemoryKind::PinnedHost: return "pinned host memory";
    case MemoryKind::Device: return "device memory";
    case MemoryKind::Managed: return "managed memory";
  }
  return "unknown memory";
}

bool memoryKindFromCuda(int cudaMemoryType, MemoryKind* kind) {
  switch (cudaMemoryType) {
    case 0: *kind = MemoryKind::Host; return true;
    case 1: *kind = MemoryKind::PinnedHost; return true;
    case 2: *kind = MemoryKind::Device; return true;
    case 3: *kind = MemoryKind::Managed; return true;
    default: return false;
  }
}

Path pathFor(const char* what, MemoryKind send, MemoryKind recv) {
  for (MemoryKind k : {send, recv})
    KUMI_REQUIRE_ARG(k != MemoryKind::Managed, what, ": ", memoryKindName(k),
                     " (cudaMallocManaged) is not supported; use cudaMalloc or host memory");
  const bool sendOnGpu = send == MemoryKind::Device, recvOnGpu = recv == MemoryKind::Device;
  KUMI_REQUIRE_ARG(sendOnGpu == recvOnGpu, what, ": sendbuff is ", memoryKindName(send), " and recvbuff ",
                   memoryKindName(recv), "; one rank's buffers must both be device memory or both host memory");
  return sendOnGpu ? Path::Gpu : Path::Cpu;
}

}  // namespace kumi::gpu
