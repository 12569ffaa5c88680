// The GPU path's host-side logic, runnable without a GPU: launch configuration of the reduction
// kernels, the memory-kind mapping and which buffer combinations a collective takes, the choice
// between the copy engine and the copy kernel from measured times, and what a machine without a
// GPU (or a build without CUDA) answers.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gpu/copy_choice.hpp"
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

TEST(CopyChoice, TheKernelOnlyWhereItMeasuredClearlyFaster) {
  // Measured shapes of a part where a kernel starts sooner: faster small, a tie at 64 KiB
  // (within 5%: the engine, which leaves the SMs to the reductions), slower large.
  const CopyChoice c = CopyChoice::fromTimings({{16u << 10, 8.0, 3.0},
                                                {4u << 10, 7.5, 2.5},
                                                {64u << 10, 9.0, 8.8},
                                                {1u << 20, 20.0, 26.0}});
  EXPECT_EQ(c.forBytes(1), CopyMethod::Kernel);  // below the smallest measured: its choice
  EXPECT_EQ(c.forBytes(4u << 10), CopyMethod::Kernel);
  EXPECT_EQ(c.forBytes((64u << 10) - 1), CopyMethod::Kernel);
  EXPECT_EQ(c.forBytes(64u << 10), CopyMethod::Engine);
  EXPECT_EQ(c.forBytes(1u << 30), CopyMethod::Engine);  // above the largest: its choice
  EXPECT_EQ(c.describe(), "kernel below 64 KiB, copy engine from 64 KiB");
}

TEST(CopyChoice, RunsOfEachMethodAreDescribedAndFixedPoliciesHoldEverywhere) {
  const CopyChoice mixed = CopyChoice::fromTimings({{4u << 10, 5, 6}, {16u << 10, 5, 3}, {64u << 10, 10, 12}});
  EXPECT_EQ(mixed.describe(), "copy engine below 16 KiB, kernel from 16 KiB, copy engine from 64 KiB");
  EXPECT_EQ(CopyChoice().forBytes(123), CopyMethod::Engine);
  EXPECT_EQ(CopyChoice().describe(), "copy engine at every size");
  const CopyChoice kernel = CopyChoice::fixed(CopyMethod::Kernel);
  EXPECT_EQ(kernel.forBytes(0), CopyMethod::Kernel);
  EXPECT_EQ(kernel.forBytes(std::size_t{1} << 40), CopyMethod::Kernel);
  EXPECT_EQ(kernel.describe(), "kernel at every size");
  EXPECT_EQ(CopyChoice::fromTimings({{4u << 10, 5, 1}, {16u << 10, 5, 1}}).describe(), "kernel at every size");
}

TEST(CopyChoice, BrokenMeasurementsAndPoliciesAreRefusedByName) {
  try {
    CopyChoice::fromTimings({{4u << 10, 5, 0}});
    ADD_FAILURE() << "a zero timing was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("copy timings of 4 KiB must be positive"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CopyChoice::fromTimings({{4u << 10, 5, 1}, {4u << 10, 5, 2}}), Error);
  EXPECT_THROW(CopyChoice::fromTimings({}), Error);
  EXPECT_THROW(CopyChoice::fromTimings({{4u << 10, std::numeric_limits<double>::quiet_NaN(), 1}}), Error);
  EXPECT_EQ(parseCopyPolicy("auto"), CopyPolicy::Auto);
  EXPECT_EQ(parseCopyPolicy("engine"), CopyPolicy::Engine);
  EXPECT_EQ(parseCopyPolicy("kernel"), CopyPolicy::Kernel);
  try {
    parseCopyPolicy("sm");
    ADD_FAILURE() << "'sm' was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "KUMI_CUDA_COPY must be auto, engine or kernel, got 'sm'");
  }
  const auto sizes = copyCalibrationSizes();
  ASSERT_EQ(sizes.size(), 7u);
  EXPECT_EQ(sizes.front(), 4u << 10);
  EXPECT_EQ(sizes.back(), 16u << 20);
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
