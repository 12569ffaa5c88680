#include "device_buffers.hpp"

#include <stdexcept>

#if KUMI_HAVE_CUDA
#include <cuda_runtime.h>

namespace bench {
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
}  // namespace

DeviceBuffers::DeviceBuffers() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  name_ = prop.name;
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
}

DeviceBuffers::~DeviceBuffers() {
  if (stream_) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  cudaFree(send_);
  cudaFree(recv_);
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void DeviceBuffers::reserve(std::size_t sendBytes, std::size_t recvBytes) {
  auto grow = [](std::byte*& p, std::size_t& have, std::size_t want) {
    if (want <= have && p) return;
    cudaFree(p);
    p = nullptr;
    have = 0;
    void* q = nullptr;
    check(cudaMalloc(&q, want ? want : 1), "cudaMalloc");
    p = static_cast<std::byte*>(q);
    have = want;
  };
  synchronize();
  grow(send_, sendBytes_, sendBytes);
  grow(recv_, recvBytes_, recvBytes);
}

void DeviceBuffers::toDevice(void* dst, const void* src, std::size_t bytes) {
  synchronize();
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}

void DeviceBuffers::toHost(void* dst, const void* src, std::size_t bytes) {
  synchronize();
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}

void DeviceBuffers::synchronize() { check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "cudaStreamSynchronize"); }

}  // namespace bench
#else
namespace bench {
DeviceBuffers::DeviceBuffers() {
  throw std::runtime_error("--memory device: this kumi-bench was built without CUDA (no nvcc at build time)");
}
DeviceBuffers::~DeviceBuffers() = default;
void DeviceBuffers::reserve(std::size_t, std::size_t) {}
void DeviceBuffers::toDevice(void*, const void*, std::size_t) {}
void DeviceBuffers::toHost(void*, const void*, std::size_t) {}
void DeviceBuffers::synchronize() {}
}  // namespace bench
#endif
