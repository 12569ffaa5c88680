#include "gpu/wait_kernel.hpp"

#include <cuda_runtime.h>

#include "core/error.hpp"

namespace kumi::gpu {
namespace {

__global__ void waitKernel(const volatile unsigned* counter, unsigned target) {
  // Cyclic comparison, as cuStreamWaitValue32's GEQ: the call count may wrap.
  while (static_cast<int>(*counter - target) < 0) __nanosleep(2000);
}

}  // namespace

void launchWaitKernel(const void* counter, std::uint32_t target, void* stream) {
  waitKernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const volatile unsigned*>(counter), target);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(kumiSystemError, "CUDA: launching the stream-wait kernel: ", cudaGetErrorString(e));
}

}  // namespace kumi::gpu
