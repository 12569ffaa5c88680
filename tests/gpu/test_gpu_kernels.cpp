// The CUDA reduction kernels against the CPU kernels (core/reduce.hpp) for every type and op, on
// aligned and misaligned buffers and sizes around the vector width, in place and out of place;
// the copy kernel likewise, byte for byte.
// Needs a GPU: without one every test skips and says why (the device check script,
// scripts/device-check.sh, runs them on the lent machine).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "core/reduce.hpp"
#include "core/types.hpp"
#include "gpu/copy_kernel.hpp"
#include "gpu/reduce_device.hpp"
#include "gpu/runtime.hpp"

namespace kumi::gpu {
namespace {

// Random bytes that are sensible values of the type: small integers (so that prod does not
// always wrap to 0), and floats in [-8, 8] with a NaN now and then.
std::vector<unsigned char> values(kumiDataType_t t, std::size_t n, std::mt19937& rng) {
  std::vector<unsigned char> out(n * typeSize(t));
  std::uniform_real_distribution<float> f(-8, 8);
  std::uniform_int_distribution<int> i(-5, 5);
  for (std::size_t k = 0; k < n; ++k) {
    unsigned char* p = out.data() + k * typeSize(t);
    const bool nan = k % 97 == 13;
    switch (t) {
      case kumiFloat32: { float v = nan ? NAN : f(rng); std::memcpy(p, &v, 4); break; }
      case kumiFloat64: { double v = nan ? NAN : f(rng); std::memcpy(p, &v, 8); break; }
      case kumiFloat16: case kumiBfloat16: {
        // bfloat16: the top half of a float (its NaN too); float16: values in [1, 2) from mantissa bits.
        float v = nan ? NAN : f(rng);
        std::uint32_t bits;
        std::memcpy(&bits, &v, 4);
        std::uint16_t h = t == kumiBfloat16 ? static_cast<std::uint16_t>(bits >> 16)
                                            : static_cast<std::uint16_t>(0x3c00 + (i(rng) & 0x3ff));
        std::memcpy(p, &h, 2);
        break;
      }
      default: {
        const long long v = i(rng);
        std::memcpy(p, &v, typeSize(t));  // little-endian: the low bytes
        break;
      }
    }
  }
  return out;
}

// Equal bytes, or both NaN (payloads may differ between CPU and GPU conversions).
bool sameElement(kumiDataType_t t, const unsigned char* a, const unsigned char* b) {
  if (std::memcmp(a, b, typeSize(t)) == 0) return true;
  auto nan16 = [](const unsigned char* p, bool bf) {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return bf ? ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) : ((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
  };
  switch (t) {
    case kumiFloat32: { float x, y; std::memcpy(&x, a, 4); std::memcpy(&y, b, 4); return std::isnan(x) && std::isnan(y); }
    case kumiFloat64: { double x, y; std::memcpy(&x, a, 8); std::memcpy(&y, b, 8); return std::isnan(x) && std::isnan(y); }
    case kumiFloat16: return nan16(a, false) && nan16(b, false);
    case kumiBfloat16: return nan16(a, true) && nan16(b, true);
    default: return false;
  }
}

class GpuKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!available(&why)) GTEST_SKIP() << "needs a CUDA device (scripts/device-check.sh on the lent GPU): " << why;
  }
  struct DeviceBuffer {
    void* p = nullptr;
    explicit DeviceBuffer(std::size_t bytes) { EXPECT_EQ(cudaMalloc(&p, bytes + 64), cudaSuccess); }
    ~DeviceBuffer() { cudaFree(p); }
    char* at(std::size_t offset) const { return static_cast<char*>(p) + offset; }
  };
};

TEST_F(GpuKernels, EveryTypeAndOpMatchesTheCpuKernels) {
  std::mt19937 rng(7);
  const kumiDataType_t types[] = {kumiInt8, kumiUint8, kumiInt32, kumiUint32, kumiInt64, kumiUint64,
                                  kumiFloat16, kumiBfloat16, kumiFloat32, kumiFloat64};
  for (kumiDataType_t t : types)
    for (kumiRedOp_t op : {kumiSum, kumiProd, kumiMin, kumiMax, kumiAvg})
      for (std::size_t n : {1ul, 15ul, 16ul, 17ul, 1000ul, 65537ul, 3'000'001ul})
        for (std::size_t misalign : {0ul, 1ul}) {
          SCOPED_TRACE(testing::Message() << "type " << t << " op " << op << " n " << n << " offset " << misalign);
          const std::size_t es = typeSize(t), bytes = n * es, off = misalign * es;
          const auto a = values(t, n, rng), b = values(t, n, rng);
          std::vector<unsigned char> want(bytes), got(bytes);
          reduceBuffers(t, op, want.data(), a.data(), b.data(), n);
          DeviceBuffer da(bytes), db(bytes), dd(bytes);
          ASSERT_EQ(cudaMemcpy(da.at(off), a.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
          ASSERT_EQ(cudaMemcpy(db.at(0), b.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
          reduceOnDevice(t, op, dd.at(off), da.at(off), db.at(0), n, nullptr);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          ASSERT_EQ(cudaMemcpy(got.data(), dd.at(off), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
          for (std::size_t k = 0; k < n; ++k)
            ASSERT_TRUE(sameElement(t, got.data() + k * es, want.data() + k * es)) << "element " << k;
          // In place: dst is a.
          reduceOnDevice(t, op, da.at(off), da.at(off), db.at(0), n, nullptr);
          ASSERT_EQ(cudaMemcpy(got.data(), da.at(off), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
          for (std::size_t k = 0; k < n; ++k)
            ASSERT_TRUE(sameElement(t, got.data() + k * es, want.data() + k * es)) << "in place, element " << k;
        }
}

TEST_F(GpuKernels, DivisionMatchesTheCpu) {
  std::mt19937 rng(9);
  for (kumiDataType_t t : {kumiInt8, kumiInt32, kumiUint64, kumiFloat16, kumiBfloat16, kumiFloat32, kumiFloat64}) {
    const std::size_t n = 100'003, es = typeSize(t);
    auto v = values(t, n, rng);
    auto want = v;
    divideInPlace(t, want.data(), n, 3);
    DeviceBuffer d(n * es);
    ASSERT_EQ(cudaMemcpy(d.p, v.data(), n * es, cudaMemcpyHostToDevice), cudaSuccess);
    divideOnDevice(t, d.p, n, 3, nullptr);
    ASSERT_EQ(cudaMemcpy(v.data(), d.p, n * es, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t k = 0; k < n; ++k) ASSERT_TRUE(sameElement(t, v.data() + k * es, want.data() + k * es)) << k;
  }
}

TEST_F(GpuKernels, TheCopyKernelCopiesEveryByteAndNothingElse) {
  std::mt19937 rng(11);
  for (std::size_t bytes : {1ul, 15ul, 16ul, 17ul, 4095ul, 65536ul, 1'000'003ul, 16ul << 20})
    for (std::size_t off : {0ul, 16ul, 3ul}) {
      SCOPED_TRACE(testing::Message() << bytes << " bytes at offset " << off);
      std::vector<unsigned char> src(bytes), got(bytes + 64);
      for (auto& c : src) c = static_cast<unsigned char>(rng());
      DeviceBuffer ds(bytes), dd(bytes);
      ASSERT_EQ(cudaMemset(dd.p, 0xAB, bytes + 64), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(ds.at(off), src.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
      copyOnDevice(dd.at(off), ds.at(off), bytes, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(got.data(), dd.p, bytes + 64, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(std::memcmp(got.data() + off, src.data(), bytes), 0);
      for (std::size_t k = 0; k < off; ++k) ASSERT_EQ(got[k], 0xAB) << "written before the destination at " << k;
      for (std::size_t k = off + bytes; k < bytes + 64; ++k) ASSERT_EQ(got[k], 0xAB) << "written past the end at " << k;
    }
  copyOnDevice(nullptr, nullptr, 0, nullptr);  // nothing to copy: no launch
}

TEST_F(GpuKernels, RunsOnTheCallersStreamWithoutBlockingTheHost) {
  const std::size_t n = std::size_t{1} << 26;
  DeviceBuffer a(n * 4), b(n * 4);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(a.p, 0, n * 4, s), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(b.p, 0, n * 4, s), cudaSuccess);
  for (int i = 0; i < 20; ++i) reduceOnDevice(kumiFloat32, kumiSum, a.p, a.p, b.p, n, s);
  // Twenty passes over 768 MiB take milliseconds; the calls returned before the work was done.
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST_F(GpuKernels, RefusesUnknownTypesAndOps) {
  DeviceBuffer d(64);
  EXPECT_THROW(reduceOnDevice(static_cast<kumiDataType_t>(42), kumiSum, d.p, d.p, d.p, 4, nullptr), Error);
  EXPECT_THROW(reduceOnDevice(kumiFloat32, static_cast<kumiRedOp_t>(42), d.p, d.p, d.p, 4, nullptr), Error);
  EXPECT_THROW(divideOnDevice(kumiFloat32, d.p, 4, 0, nullptr), Error);
}

}  // namespace
}  // namespace kumi::gpu
