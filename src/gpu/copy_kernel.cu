// The copy kernel (gpu/copy_kernel.hpp): a grid-stride loop of 16-byte loads and stores when
// both pointers are 16-byte aligned, bytes one at a time otherwise; the grid fills every
// multiprocessor (gpu/launch_config.hpp), as the reductions' does.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.hpp"
#include "gpu/copy_kernel.hpp"
#include "gpu/launch_config.hpp"
#include "gpu/runtime.hpp"

namespace kumi::gpu {
namespace {

__global__ void copyVectors(uint4* dst, const uint4* src, std::size_t vectors, unsigned char* dstTail,
                            const unsigned char* srcTail, std::size_t tail) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t first = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::size_t i = first; i < vectors; i += stride) dst[i] = src[i];
  if (first < tail) dstTail[first] = srcTail[first];  // the last bytes % 16, one thread each
}

__global__ void copyBytes(unsigned char* dst, const unsigned char* src, std::size_t bytes) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < bytes; i += stride)
    dst[i] = src[i];
}

}  // namespace

void copyOnDevice(void* dst, const void* src, std::size_t bytes, void* stream) {
  const ReduceLaunch l = reduceLaunch(bytes, 1, reinterpret_cast<std::uintptr_t>(dst),
                                      reinterpret_cast<std::uintptr_t>(src), reinterpret_cast<std::uintptr_t>(src),
                                      multiprocessors());
  if (l.blocks == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  auto* d = static_cast<unsigned char*>(dst);
  const auto* x = static_cast<const unsigned char*>(src);
  if (l.vectorElements == 16) {
    const std::size_t vectors = bytes / 16, done = vectors * 16;
    copyVectors<<<l.blocks, l.threadsPerBlock, 0, s>>>(reinterpret_cast<uint4*>(d), reinterpret_cast<const uint4*>(x),
                                                       vectors, d + done, x + done, bytes - done);
  } else {
    copyBytes<<<l.blocks, l.threadsPerBlock, 0, s>>>(d, x, bytes);
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(kumiSystemError, "CUDA: launching a copy kernel: ", cudaGetErrorString(e));
}

}  // namespace kumi::gpu
