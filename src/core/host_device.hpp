// Marks scalar code that the CPU kernels and the CUDA kernels share (core/reduce_op.hpp,
// core/half.hpp), so that both compute the same results from one definition.
#pragma once

#if defined(__CUDACC__)
#define KUMI_HOST_DEVICE __host__ __device__
#else
#define KUMI_HOST_DEVICE
#endif
