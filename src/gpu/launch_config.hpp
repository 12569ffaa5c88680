// How a reduction kernel is launched: pure arithmetic, so that it is tested without a GPU.
// The kernels are memory-bound: each thread moves 16-byte vectors (when all three pointers allow
// it) in a grid-stride loop, and the grid is just large enough to keep every multiprocessor full
// (more blocks only add scheduling work; fewer leave bandwidth unused).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kumi::gpu {

struct ReduceLaunch {
  int threadsPerBlock = 0;
  std::uint32_t blocks = 0;  // 0: nothing to do (count 0)
  int vectorElements = 1;    // elements each thread loads at once: 16 bytes' worth, or 1
};

constexpr int kReduceThreadsPerBlock = 256;
// Resident blocks per multiprocessor the grid aims for (2048 threads on sm_70 .. sm_90).
constexpr int kReduceBlocksPerMultiprocessor = 8;

// count elements of elemSize bytes at dst, a and b (device addresses; only their alignment is
// looked at) on a device with `multiprocessors` SMs.
ReduceLaunch reduceLaunch(std::size_t count, std::size_t elemSize, std::uintptr_t dst, std::uintptr_t a,
                          std::uintptr_t b, int multiprocessors);

}  // namespace kumi::gpu
