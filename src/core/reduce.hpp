// CPU reduction kernels. SIMD through Google Highway with runtime dispatch to the best target
// the CPU supports (AVX-512, AVX2, SSE4, ...). float16 and bfloat16 are computed in float32 and
// rounded to nearest-even once per call; integers wrap on overflow; min and max propagate NaN.
#pragma once

#include <kumi/kumi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kumi {

// dst[i] = a[i] op b[i] for i < n. dst may alias a or b exactly. kumiAvg reduces as kumiSum
// (the division happens once, in divideInPlace).
void reduceBuffers(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b,
                   std::size_t n);

// dst[i] /= divisor for i < n (the final step of kumiAvg). Integers truncate toward zero.
void divideInPlace(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor);

// The SIMD target the dispatcher picks on this CPU, e.g. "AVX3" (AVX-512) or "AVX2".
std::string reduceTargetName();

// For tests and benchmarks: the targets compiled in and supported here, and a way to force one
// (0 restores automatic choice).
std::vector<std::int64_t> reduceTargetsAvailable();
std::string reduceTargetName(std::int64_t target);
void forceReduceTarget(std::int64_t target);

}  // namespace kumi
