// The GPU path's host-side logic, runnable without a GPU: launch configuration of the reduction
// kernels, the memory-kind mapping and which buffer combinations a collective takes, and what a
// machine without a GPU (or a build without CUDA) answers.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.hpp"
#include "gpu/launch_config.hpp"
#include "gpu/memory_kind.hpp"
#include "gpu/runtime.hpp"

namespace kumi::gpu {
namespace {

TEST(ReduceLaunch, VectorsOfSixteenBytesWhenEveryPointerIsAligned) {
  const std::uintptr_t base = 0x10000;
  EXPECT_EQ(reduceLaunch(1000, 4, base, base + 4096, base + 8192, 132).vectorElements, 4);
  EXPECT_EQ(reduceLaunch(1000, 2, base, base, base, 132).vectorElements, 8);
  EXPECT_EQ(reduceLaunch(1000, 1, base, base, base, 132).vectorElements, 16);
  EXPECT_EQ(reduceLaunch(1000, 8, base, base, base, 132).vectorElements, 2);
  // Any one pointer off by an element (a view into a tensor) takes the scalar kernel.
  EXPECT_EQ(reduceLaunch(1000, 4, base + 4, base, base, 132).vectorElements, 1);
  EXPECT_EQ(reduceLaunch(1000, 4, base, base + 8, base, 132).vectorElements, 1);
  EXPECT_EQ(reduceLaunch(1000, 2, base, base, base + 2, 132).vectorElements, 1);
}

TEST(ReduceLaunch, GridCoversSmallInputsAndFillsTheDeviceForLargeOnes) {
  const int sms = 132;  // H100/H200
  const auto none = reduceLaunch(0, 4, 0, 0, 0, sms);
  EXPECT_EQ(none.blocks, 0u) << "nothing to launch";
  const auto one = reduceLaunch(1, 4, 0, 0, 0, sms);
  EXPECT_EQ(one.blocks, 1u);
  EXPECT_EQ(one.threadsPerBlock, kReduceThreadsPerBlock);
  // 256 threads x 4 floats = 1024 elements per block and step: 1025 needs two blocks.
  EXPECT_EQ(reduceLaunch(1024, 4, 0, 0, 0, sms).blocks, 1u);
  EXPECT_EQ(reduceLaunch(1025, 4, 0, 0, 0, sms).blocks, 2u);
  // 1 GiB of floats: capped at the resident blocks of every SM; the grid-stride loop does the rest.
  const auto big = reduceLaunch(std::size_t{1} << 28, 4, 0, 0, 0, sms);
  EXPECT_EQ(big.blocks, static_cast<std::uint32_t>(sms * kReduceBlocksPerMultiprocessor));
  EXPECT_EQ(reduceLaunch(std::size_t{1} << 28, 4, 0, 0, 0, 80).blocks, 80u * kReduceBlocksPerMultiprocessor);  // V100
  // Every element is covered: blocks x threads x vector x steps >= count.
  for (std::size_t count : {1ul, 7ul, 1023ul, 1025ul, 999'999ul, (1ul << 28) + 3})
    for (std::uintptr_t misalign : {0ul, 4ul}) {
      const auto l = reduceLaunch(count, 4, misalign, 0, 0, sms);
      const std::size_t perStep = std::size_t{l.blocks} * static_cast<std::size_t>(l.threadsPerBlock) *
                                  static_cast<std::size_t>(l.vectorElements);
      ASSERT_GT(perStep, 0u);
      const std::size_t steps = (count + perStep - 1) / perStep;
      EXPECT_GE(steps * perStep, count);
      if (l.blocks < sms * kReduceBlocksPerMultiprocessor) {
        EXPECT_EQ(steps, 1u) << "a small grid needs no loop";
      }
    }
}

TEST(ReduceLaunch, RefusesImpossibleShapes) {
  EXPECT_THROW(reduceLaunch(10, 3, 0, 0, 0, 10), Error);
  EXPECT_THROW(reduceLaunch(10, 4, 0, 0, 0, 0), Error);
}

TEST(MemoryKind, MapsCudaPointerTypes) {
  MemoryKind k{};
  ASSERT_TRUE(memoryKindFromCuda(0, &k));
  EXPECT_EQ(k, MemoryKind::Host);
  ASSERT_TRUE(memoryKindFromCuda(1, &k));
  EXPECT_EQ(k, MemoryKind::PinnedHost);
  ASSERT_TRUE(memoryKindFromCuda(2, &k));
  EXPECT_EQ(k, MemoryKind::Device);
  ASSERT_TRUE(memoryKindFromCuda(3, &k));
  EXPECT_EQ(k, MemoryKind::Managed);
  EXPECT_FALSE(memoryKindFromCuda(4, &k)) << "a type CUDA adds later is not guessed at";
  EXPECT_FALSE(memoryKindFromCuda(-1, &k));
}

TEST(MemoryKind, PathForEachCombination) {
  using K = MemoryKind;
  EXPECT_EQ(pathFor("allreduce", K::Host, K::Host), Path::Cpu);
  EXPECT_EQ(pathFor("allreduce", K::PinnedHost, K::Host), Path::Cpu);
  EXPECT_EQ(pathFor("allreduce", K::Device, K::Device), Path::Gpu);
  for (auto [s, r] : std::vector<std::pair<K, K>>{{K::Device, K::Host}, {K::PinnedHost, K::Device}}) {
    try {
      pathFor("allreduce", s, r);
      ADD_FAILURE() << "mixed kinds were taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kumiInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("allreduce: sendbuff is"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("both"), std::string::npos) << e.what();
    }
  }
  for (auto [s, r] : std::vector<std::pair<K, K>>{{K::Managed, K::Managed}, {K::Device, K::Managed}}) {
    try {
      pathFor("broadcast", s, r);
      ADD_FAILURE() << "managed memory was taken";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("managed memory (cudaMallocManaged) is not supported"), std::string::npos)
          << e.what();
    }
  }
}

TEST(GpuRuntime, AnswersWithoutAGpu) {
  std::string why;
  const bool ok = available(&why);
  if (ok) GTEST_SKIP() << "a GPU is present: the no-GPU answers are not what this machine gives";
  EXPECT_FALSE(why.empty()) << "no GPU must come with a reason";
  EXPECT_EQ(available(nullptr), false) << "the answer is kept";
  int local = 0;
  EXPECT_EQ(memoryKindOf(&local), MemoryKind::Host);
  EXPECT_EQ(memoryKindOf(nullptr), MemoryKind::Host);
  if (!built()) {
    EXPECT_NE(why.find("without CUDA"), std::string::npos) << why;
    EXPECT_THROW(multiprocessors(), Error);
  } else {
    EXPECT_NE(why.find("CUDA:"), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace kumi::gpu
