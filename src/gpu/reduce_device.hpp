// Reductions on the GPU, for every kumi type and op with the CPU kernels' semantics
// (core/reduce.hpp): float16 and bfloat16 computed in float32 and rounded to nearest-even once,
// integers wrapping on overflow, min and max propagating NaN. Launched on the caller's stream
// without waiting for them; errors of the launch are thrown as kumi::Error. The stream is a
// cudaStream_t passed as void* so that this header stays free of CUDA's.
#pragma once

#include <kumi/kumi.h>

#include <cstddef>
#include <cstdint>

namespace kumi::gpu {

// dst[i] = a[i] op b[i] for i < n, on device memory; dst may alias a or b exactly.
void reduceOnDevice(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b, std::size_t n,
                    void* stream);
// dst[i] /= divisor (kumiAvg's last step); integers truncate toward zero.
void divideOnDevice(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor, void* stream);

}  // namespace kumi::gpu
