// float16 / bfloat16 scalar conversions: exhaustive round trips over all 65536 patterns, decoding
// against exact values, and encoding of floats checked against an independent round-to-nearest-
// even derived in double arithmetic (the nearer neighbour, ties to even, overflow to Inf).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "core/half.hpp"

namespace {

struct Format {
  const char* name;
  int man;   // explicit mantissa bits
  int bias;  // exponent bias
  float (*toFloat)(std::uint16_t);
  std::uint16_t (*fromFloat)(float);

  int expMask() const { return (1 << (15 - man)) - 1; }
  int emin() const { return 1 - bias; }
  std::uint16_t inf() const { return static_cast<std::uint16_t>(expMask() << man); }
  bool isNaN(std::uint16_t h) const { return (h & 0x7fff) > inf(); }
  bool isInf(std::uint16_t h) const { return (h & 0x7fff) == inf(); }
  // Exact value of a finite pattern.
  double value(std::uint16_t h) const {
    int e = (h >> man) & expMask();
    int m = h & ((1 << man) - 1);
    double v = e == 0 ? std::ldexp(m, emin() - man) : std::ldexp((1 << man) + m, e - bias - man);
    return (h & 0x8000) ? -v : v;
  }
  // The value just past the largest finite one (where Inf "sits" for rounding).
  double overflowValue() const { return std::ldexp(1.0, bias + 1); }
  // Magnitude of the pattern with magnitude bits m, treating Inf as overflowValue().
  double magnitude(std::uint16_t m) const { return m == inf() ? overflowValue() : value(m); }
};

float fp16ToFloatFn(std::uint16_t h) { return kumi::fp16ToFloat(h); }
std::uint16_t floatToFp16Fn(float f) { return kumi::floatToFp16(f); }
float bf16ToFloatFn(std::uint16_t h) { return kumi::bf16ToFloat(h); }
std::uint16_t floatToBf16Fn(float f) { return kumi::floatToBf16(f); }

const Format kFp16{"fp16", 10, 15, fp16ToFloatFn, floatToFp16Fn};
const Format kBf16{"bf16", 7, 127, bf16ToFloatFn, floatToBf16Fn};

std::string hex(std::uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", digits, v);
  return buf;
}

// Verifies that h = fromFloat(x) is the correctly rounded result; returns "" or the complaint.
std::string checkRounding(const Format& f, float x) {
  const std::uint16_t h = f.fromFloat(x);
  const std::string ctx = std::string(f.name) + "(" + hex(std::bit_cast<std::uint32_t>(x), 8) + " = " +
                          std::to_string(x) + ") = " + hex(h, 4);
  if (std::isnan(x)) return f.isNaN(h) ? "" : ctx + ": NaN must stay NaN";
  if (((h & 0x8000) != 0) != std::signbit(x)) return ctx + ": wrong sign";
  if (f.isNaN(h)) return ctx + ": a number became NaN";
  const double ax = std::fabs(static_cast<double>(x));
  if (std::isinf(x)) return f.isInf(h) ? "" : ctx + ": Inf must stay Inf";
  const std::uint16_t m = h & 0x7fff;
  const double v = f.magnitude(m);
  const double err = std::fabs(ax - v);
  // Neighbours of the result on both sides; the result must be at least as close as each.
  if (m > 0) {
    double below = f.magnitude(static_cast<std::uint16_t>(m - 1));
    double errBelow = std::fabs(ax - below);
    if (errBelow < err) return ctx + ": the next smaller magnitude is nearer";
    if (errBelow == err && (m & 1)) return ctx + ": tie not rounded to even";
  }
  if (m < f.inf()) {
    double above = f.magnitude(static_cast<std::uint16_t>(m + 1));
    double errAbove = std::fabs(ax - above);
    if (errAbove < err) return ctx + ": the next larger magnitude is nearer";
    if (errAbove == err && (m & 1)) return ctx + ": tie not rounded to even";
  }
  // The result must bracket x with a neighbour (nearest among ALL values, not just adjacent).
  if (m < f.inf() && v < ax && f.magnitude(static_cast<std::uint16_t>(m + 1)) < ax)
    return ctx + ": result is not adjacent to x (too small)";
  if (m > 0 && v > ax && f.magnitude(static_cast<std::uint16_t>(m - 1)) > ax)
    return ctx + ": result is not adjacent to x (too large)";
  if (m == 0 && ax > 0 && f.magnitude(1) <= ax) return ctx + ": flushed to zero";
  if (m == f.inf() && ax < f.magnitude(static_cast<std::uint16_t>(f.inf() - 1)))
    return ctx + ": overflowed too early";
  return "";
}

void expectRoundingOk(const Format& f, float x, int* failures) {
  if (*failures >= 10) return;
  std::string why = checkRounding(f, x);
  if (!why.empty()) {
    ++*failures;
    ADD_FAILURE() << why;
  }
}

void exhaustiveRoundTrip(const Format& f) {
  int failures = 0;
  for (std::uint32_t i = 0; i < 65536 && failures < 10; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float x = f.toFloat(h);
    if (f.isNaN(h)) {
      if (!std::isnan(x)) ++failures, ADD_FAILURE() << f.name << " " << hex(h, 4) << " (NaN) decoded to " << x;
      std::uint16_t back = f.fromFloat(x);
      if (!f.isNaN(back))
        ++failures, ADD_FAILURE() << f.name << " NaN " << hex(h, 4) << " round-tripped to non-NaN " << hex(back, 4);
      continue;
    }
    if (f.isInf(h)) {
      if (!std::isinf(x) || std::signbit(x) != ((h & 0x8000) != 0))
        ++failures, ADD_FAILURE() << f.name << " " << hex(h, 4) << " should decode to " << ((h & 0x8000) ? "-" : "+")
                                  << "Inf, got " << x;
    } else {
      const double exact = f.value(h);
      if (static_cast<double>(x) != exact || std::signbit(x) != ((h & 0x8000) != 0))
        ++failures, ADD_FAILURE() << f.name << " " << hex(h, 4) << " decoded to " << x << ", exact value " << exact;
    }
    const std::uint16_t back = f.fromFloat(x);
    if (back != h) ++failures, ADD_FAILURE() << f.name << " " << hex(h, 4) << " -> " << x << " -> " << hex(back, 4);
  }
}

TEST(Half, Fp16ExhaustiveRoundTrip) { exhaustiveRoundTrip(kFp16); }
TEST(Half, Bf16ExhaustiveRoundTrip) { exhaustiveRoundTrip(kBf16); }

TEST(Half, DecodingKnownValues) {
  EXPECT_EQ(kumi::fp16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(kumi::fp16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(kumi::fp16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(kumi::fp16ToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(kumi::fp16ToFloat(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(kumi::fp16ToFloat(0x0400), 0x1p-14f);
  EXPECT_TRUE(std::signbit(kumi::fp16ToFloat(0x8000)));
  EXPECT_EQ(kumi::bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(kumi::bf16ToFloat(0x7f7f), 0x1.fep127f);
  EXPECT_EQ(kumi::bf16ToFloat(0x0001), 0x1p-133f);
  EXPECT_EQ(kumi::floatToFp16(1.0f), 0x3c00);
  EXPECT_EQ(kumi::floatToFp16(65504.0f), 0x7bff);
  EXPECT_EQ(kumi::floatToFp16(-0.0f), 0x8000);
  EXPECT_EQ(kumi::floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(kumi::floatToBf16(-0.0f), 0x8000);
}

TEST(Half, Fp16BoundaryCases) {
  // Overflow: 65520 is halfway between 65504 and 65536 (Inf's slot): ties to even -> Inf.
  EXPECT_EQ(kumi::floatToFp16(65520.0f), 0x7c00);
  EXPECT_EQ(kumi::floatToFp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(kumi::floatToFp16(-65520.0f), 0xfc00);
  EXPECT_EQ(kumi::floatToFp16(1e10f), 0x7c00);
  EXPECT_EQ(kumi::floatToFp16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(kumi::floatToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(kumi::floatToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  // Underflow: half of the smallest subnormal ties to 0, just above rounds up.
  EXPECT_EQ(kumi::floatToFp16(0x1p-25f), 0x0000);
  EXPECT_EQ(kumi::floatToFp16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(kumi::floatToFp16(-0x1p-25f), 0x8000);
  EXPECT_EQ(kumi::floatToFp16(1.5f * 0x1p-24f), 0x0002);
  EXPECT_EQ(kumi::floatToFp16(2.5f * 0x1p-24f), 0x0002);
  EXPECT_EQ(kumi::floatToFp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Largest subnormal + half ulp ties up into the smallest normal (0x0400 is even).
  EXPECT_EQ(kumi::floatToFp16(1023.5f * 0x1p-24f), 0x0400);
  EXPECT_EQ(kumi::floatToFp16(1022.5f * 0x1p-24f), 0x03fe);
  // Normal ties.
  EXPECT_EQ(kumi::floatToFp16(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(kumi::floatToFp16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(kumi::floatToFp16(2047.0f), 0x67ff);  // exact
  EXPECT_EQ(kumi::floatToFp16(2049.0f), 0x6800);  // tie -> 2048
  EXPECT_EQ(kumi::floatToFp16(2051.0f), 0x6802);  // tie -> 2052
  // NaN stays NaN (quiet), including payloads below the fp16 mantissa bits.
  for (std::uint32_t bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0x7f802000u}) {
    std::uint16_t h = kumi::floatToFp16(std::bit_cast<float>(bits));
    EXPECT_TRUE(kFp16.isNaN(h)) << hex(bits, 8) << " -> " << hex(h, 4);
  }
}

TEST(Half, Bf16BoundaryCases) {
  EXPECT_EQ(kumi::floatToBf16(0x1.fep127f + 0x1p119f), 0x7f80);  // tie at the top -> Inf
  EXPECT_EQ(kumi::floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(kumi::floatToBf16(std::nextafter(0x1.fep127f + 0x1p119f, 0.0f)), 0x7f7f);
  EXPECT_EQ(kumi::floatToBf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(kumi::floatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(kumi::floatToBf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(kumi::floatToBf16(0x1p-134f), 0x0000);                     // tie -> 0
  EXPECT_EQ(kumi::floatToBf16(0x1p-134f + 0x1p-149f), 0x0001);         // just above the tie
  EXPECT_EQ(kumi::floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  for (std::uint32_t bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0xffffffffu, 0x7f80ffffu}) {
    std::uint16_t h = kumi::floatToBf16(std::bit_cast<float>(bits));
    EXPECT_TRUE(kBf16.isNaN(h)) << hex(bits, 8) << " -> " << hex(h, 4);
  }
}

// Every tie (exact midpoint between adjacent finite values), and the floats right next to it.
void allMidpoints(const Format& f) {
  int failures = 0;
  for (std::uint32_t i = 0; i < 0x10000; ++i) {
    const auto lo = static_cast<std::uint16_t>(i);
    if ((lo & 0x7fff) >= f.inf()) continue;  // Inf/NaN
    const std::uint16_t hi = static_cast<std::uint16_t>(lo + 1);  // next magnitude, same sign
    const double mid = (f.magnitude(lo & 0x7fff) + f.magnitude(hi & 0x7fff)) / 2;
    const double sgnMid = (lo & 0x8000) ? -mid : mid;
    const float x = static_cast<float>(sgnMid);
    ASSERT_EQ(static_cast<double>(x), sgnMid) << "midpoint not representable as float";
    const std::uint16_t expected = (lo & 1) ? hi : lo;  // ties to even
    const std::uint16_t got = f.fromFloat(x);
    if (got != expected && failures < 10)
      ++failures, ADD_FAILURE() << f.name << " tie between " << hex(lo, 4) << " and " << hex(hi, 4) << " ("
                                << sgnMid << ") gave " << hex(got, 4) << ", expected " << hex(expected, 4);
    expectRoundingOk(f, x, &failures);
    expectRoundingOk(f, std::nextafter(x, 0.0f), &failures);
    expectRoundingOk(f, std::nextafter(x, std::copysign(HUGE_VALF, x)), &failures);
  }
}

TEST(Half, Fp16AllTiesRoundToEven) { allMidpoints(kFp16); }
TEST(Half, Bf16AllTiesRoundToEven) { allMidpoints(kBf16); }

TEST(Half, Fp16RandomFloatsRoundToNearest) {
  std::mt19937 rng(20240611);
  int failures = 0;
  // Arbitrary bit patterns (mostly far outside the fp16 range: Inf or zero).
  for (int i = 0; i < 300000; ++i) expectRoundingOk(kFp16, std::bit_cast<float>(static_cast<std::uint32_t>(rng())), &failures);
  // Floats whose exponent lies in or near the fp16 range (subnormals through overflow).
  std::uniform_int_distribution<int> exp(127 - 27, 127 + 17);
  for (int i = 0; i < 1000000; ++i) {
    std::uint32_t bits = (rng() & 0x807fffffu) | (static_cast<std::uint32_t>(exp(rng)) << 23);
    expectRoundingOk(kFp16, std::bit_cast<float>(bits), &failures);
  }
  // Float subnormals and zeros.
  for (std::uint32_t bits : {0u, 0x80000000u, 1u, 0x007fffffu, 0x80000001u}) expectRoundingOk(kFp16, std::bit_cast<float>(bits), &failures);
}

TEST(Half, Bf16RandomFloatsRoundToNearest) {
  std::mt19937 rng(777);
  int failures = 0;
  for (int i = 0; i < 1000000; ++i) expectRoundingOk(kBf16, std::bit_cast<float>(static_cast<std::uint32_t>(rng())), &failures);
  // A stride through the whole float space (every exponent, sign, and low-bit pattern family).
  for (std::uint64_t bits = 0; bits < (1ull << 32); bits += 4099) expectRoundingOk(kBf16, std::bit_cast<float>(static_cast<std::uint32_t>(bits)), &failures);
}

}  // namespace
