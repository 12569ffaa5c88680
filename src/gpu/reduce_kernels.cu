// The GPU reduction kernels (gpu/reduce_device.hpp). Memory-bound: each thread of a grid-stride
// loop loads 16-byte vectors of both inputs when all pointers are 16-byte aligned, else single
// elements; the grid fills every multiprocessor (gpu/launch_config.hpp).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "core/error.hpp"
#include "core/half.hpp"
#include "core/reduce_op.hpp"
#include "gpu/launch_config.hpp"
#include "gpu/reduce_device.hpp"
#include "gpu/runtime.hpp"

namespace kumi::gpu {
namespace {

// Storage tags for the 16-bit floats: stored as bits, computed in float32.
struct Fp16 {
  std::uint16_t bits;
};
struct Bf16 {
  std::uint16_t bits;
};

// float16 through the hardware conversions (round-to-nearest-even, as core/half.hpp); bfloat16
// through core/half.hpp itself, whose bit arithmetic is as fast here.
__device__ inline float toFloat(Fp16 h) { return __half2float(__ushort_as_half(h.bits)); }
__device__ inline Fp16 fromFloat(float f, Fp16) { return {__half_as_ushort(__float2half_rn(f))}; }
__device__ inline float toFloat(Bf16 h) { return bf16ToFloat(h.bits); }
__device__ inline Bf16 fromFloat(float f, Bf16) { return {floatToBf16(f)}; }

// The CPU kernels' element semantics (core/reduce_op.hpp); Op is a constant, so the switch folds.
template <int Op, class S>
__device__ inline S elementOp(S a, S b) {
  constexpr auto op = static_cast<kumiRedOp_t>(Op);
  if constexpr (std::is_same_v<S, Fp16> || std::is_same_v<S, Bf16>) {
    return fromFloat(scalarOp<float>(op, toFloat(a), toFloat(b)), S{});
  } else {
    return scalarOp<S>(op, a, b);
  }
}

template <class S, int V>
union Vector {
  uint4 raw;
  S e[V];
};

// V elements per thread step (16 bytes / sizeof(S)) through 16-byte loads, or V == 1.
template <class S, int Op, int V>
__global__ void reduceKernel(S* dst, const S* a, const S* b, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t first = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (V == 1) {
    for (std::size_t i = first; i < n; i += stride) dst[i] = elementOp<Op>(a[i], b[i]);
  } else {
    const std::size_t vectors = n / V;
    const auto* va = reinterpret_cast<const uint4*>(a);
    const auto* vb = reinterpret_cast<const uint4*>(b);
    auto* vd = reinterpret_cast<uint4*>(dst);
    for (std::size_t i = first; i < vectors; i += stride) {
      Vector<S, V> x, y, r;
      x.raw = va[i];
      y.raw = vb[i];
#pragma unroll
      for (int k = 0; k < V; ++k) r.e[k] = elementOp<Op>(x.e[k], y.e[k]);
      vd[i] = r.raw;
    }
    // The last n % V elements, one thread each.
    const std::size_t tail = vectors * V + first;
    if (tail < n && first < static_cast<std::size_t>(V)) dst[tail] = elementOp<Op>(a[tail], b[tail]);
  }
}

template <class S>
__global__ void divideKernel(S* dst, std::size_t n, std::uint64_t divisor) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (std::is_same_v<S, Fp16> || std::is_same_v<S, Bf16>) {
      dst[i] = fromFloat(toFloat(dst[i]) / static_cast<float>(divisor), S{});
    } else if constexpr (std::is_floating_point_v<S>) {
      dst[i] = dst[i] / static_cast<S>(divisor);
    } else {
      // In 64 bits: the divisor (a rank count) may not fit the element type.
      using Wide = std::conditional_t<std::is_signed_v<S>, long long, unsigned long long>;
      dst[i] = static_cast<S>(static_cast<Wide>(dst[i]) / static_cast<Wide>(divisor));
    }
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(kumiSystemError, "CUDA: ", what, ": ", cudaGetErrorString(e));
}

template <class S, int Op>
void launchReduce(void* dst, const void* a, const void* b, std::size_t n, cudaStream_t stream) {
  const ReduceLaunch l = reduceLaunch(n, sizeof(S), reinterpret_cast<std::uintptr_t>(dst),
                                      reinterpret_cast<std::uintptr_t>(a), reinterpret_cast<std::uintptr_t>(b),
                                      multiprocessors());
  if (l.blocks == 0) return;
  auto* d = static_cast<S*>(dst);
  const auto* x = static_cast<const S*>(a);
  const auto* y = static_cast<const S*>(b);
  constexpr int V = 16 / static_cast<int>(sizeof(S));
  if (l.vectorElements == V)
    reduceKernel<S, Op, V><<<l.blocks, l.threadsPerBlock, 0, stream>>>(d, x, y, n);
  else
    reduceKernel<S, Op, 1><<<l.blocks, l.threadsPerBlock, 0, stream>>>(d, x, y, n);
  check(cudaGetLastError(), "launching a reduction kernel");
}

template <class S>
void reduceTyped(kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n, cudaStream_t s) {
  switch (op) {
    case kumiSum:
    case kumiAvg: launchReduce<S, kumiSum>(dst, a, b, n, s); break;
    case kumiProd: launchReduce<S, kumiProd>(dst, a, b, n, s); break;
    case kumiMin: launchReduce<S, kumiMin>(dst, a, b, n, s); break;
    case kumiMax: launchReduce<S, kumiMax>(dst, a, b, n, s); break;
    default: fail(kumiInvalidArgument, "unknown reduction op ", static_cast<int>(op));
  }
}

template <class S>
void divideTyped(void* dst, std::size_t n, std::uint64_t divisor, cudaStream_t s) {
  const ReduceLaunch l = reduceLaunch(n, sizeof(S), 0, 0, 0, multiprocessors());
  if (l.blocks == 0) return;
  divideKernel<S><<<l.blocks, l.threadsPerBlock, 0, s>>>(static_cast<S*>(dst), n, divisor);
  check(cudaGetLastError(), "launching a division kernel");
}

}  // namespace

void reduceOnDevice(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n,
                    void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case kumiInt8: reduceTyped<std::int8_t>(op, dst, a, b, n, s); break;
    case kumiUint8: reduceTyped<std::uint8_t>(op, dst, a, b, n, s); break;
    case kumiInt32: reduceTyped<std::int32_t>(op, dst, a, b, n, s); break;
    case kumiUint32: reduceTyped<std::uint32_t>(op, dst, a, b, n, s); break;
    case kumiInt64: reduceTyped<std::int64_t>(op, dst, a, b, n, s); break;
    case kumiUint64: reduceTyped<std::uint64_t>(op, dst, a, b, n, s); break;
    case kumiFloat16: reduceTyped<Fp16>(op, dst, a, b, n, s); break;
    case kumiBfloat16: reduceTyped<Bf16>(op, dst, a, b, n, s); break;
    case kumiFloat32: reduceTyped<float>(op, dst, a, b, n, s); break;
    case kumiFloat64: reduceTyped<double>(op, dst, a, b, n, s); break;
    default: fail(kumiInvalidArgument, "unknown data type ", static_cast<int>(type));
  }
}

void divideOnDevice(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor, void* stream) {
  KUMI_REQUIRE_ARG(divisor > 0, "dividing by zero ranks");
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case kumiInt8: divideTyped<std::int8_t>(dst, n, divisor, s); break;
    case kumiUint8: divideTyped<std::uint8_t>(dst, n, divisor, s); break;
    case kumiInt32: divideTyped<std::int32_t>(dst, n, divisor, s); break;
    case kumiUint32: divideTyped<std::uint32_t>(dst, n, divisor, s); break;
    case kumiInt64: divideTyped<std::int64_t>(dst, n, divisor, s); break;
    case kumiUint64: divideTyped<std::uint64_t>(dst, n, divisor, s); break;
    case kumiFloat16: divideTyped<Fp16>(dst, n, divisor, s); break;
    case kumiBfloat16: divideTyped<Bf16>(dst, n, divisor, s); break;
    case kumiFloat32: divideTyped<float>(dst, n, divisor, s); break;
    case kumiFloat64: divideTyped<double>(dst, n, divisor, s); break;
    default: fail(kumiInvalidArgument, "unknown data type ", static_cast<int>(type));
  }
}

}  // namespace kumi::gpu
