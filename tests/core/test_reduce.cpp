// Reduction kernels against an independent scalar reference, on every Highway target this CPU
// supports: all data types and operators, lengths that cover vector bodies and tails, aliasing,
// integer wrap-around, NaN/Inf/-0 semantics, and bit-exact float16/bfloat16 rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/reduce.hpp"

namespace {

// ---------------------------------------------------------------------------------------------
// Independent reference arithmetic (deliberately not sharing code with the kernels or half.hpp).

const char* typeStr(kumiDataType_t t) {
  static const char* names[] = {"int8",    "uint8",    "int32",   "uint32",  "int64",
                                "uint64",  "float16",  "bfloat16", "float32", "float64"};
  return (t >= 0 && t < kumiNumTypes) ? names[t] : "?";
}
const char* opStr(kumiRedOp_t op) {
  static const char* names[] = {"sum", "prod", "min", "max", "avg"};
  return (op >= 0 && op < kumiNumOps) ? names[op] : "?";
}
std::size_t elemSize(kumiDataType_t t) {
  switch (t) {
    case kumiInt8: case kumiUint8: return 1;
    case kumiFloat16: case kumiBfloat16: return 2;
    case kumiInt32: case kumiUint32: case kumiFloat32: return 4;
    default: return 8;
  }
}

// A 16-bit binary floating-point format: `man` explicit mantissa bits, exponent bias `bias`.
struct HalfFormat {
  int man;   // 10 for fp16, 7 for bf16
  int bias;  // 15 for fp16, 127 for bf16
  int expMask() const { return (1 << (15 - man)) - 1; }
  int emin() const { return 1 - bias; }
  int emax() const { return bias; }
  std::uint16_t infBits() const { return static_cast<std::uint16_t>(expMask() << man); }
  bool isNaN(std::uint16_t h) const {
    return ((h >> man) & expMask()) == expMask() && (h & ((1u << man) - 1)) != 0;
  }
  // Exact value of a bit pattern, in double.
  double value(std::uint16_t h) const {
    int e = (h >> man) & expMask();
    int m = h & ((1 << man) - 1);
    double v;
    if (e == expMask()) v = m ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
    else if (e == 0) v = std::ldexp(m, emin() - man);
    else v = std::ldexp((1 << man) + m, e - bias - man);
    return (h & 0x8000) ? -v : v;
  }
  // Round-to-nearest-even of a double (which must hold the exact value to be rounded).
  std::uint16_t encode(double x) const {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (std::isnan(x)) return static_cast<std::uint16_t>(sign | infBits() | (1u << (man - 1)));
    double ax = std::fabs(x);
    if (std::isinf(ax)) return static_cast<std::uint16_t>(sign | infBits());
    if (ax == 0) return sign;
    int e;
    std::frexp(ax, &e);
    e -= 1;  // 2^e <= ax < 2^(e+1)
    if (e < emin()) e = emin();
    double quantum = std::ldexp(1.0, e - man);
    double q = ax / quantum;  // exact: scaling by a power of two
    double lo = std::floor(q);
    double rem = q - lo;
    double n = lo;
    if (rem > 0.5 || (rem == 0.5 && std::fmod(lo, 2.0) != 0.0)) n = lo + 1;
    double v = n * quantum;
    if (v >= std::ldexp(1.0, emax() + 1)) return static_cast<std::uint16_t>(sign | infBits());
    if (v < std::ldexp(1.0, emin())) return static_cast<std::uint16_t>(sign | static_cast<unsigned>(n));
    int ev;
    std::frexp(v, &ev);
    ev -= 1;
    double frac = std::ldexp(v, man - ev) - std::ldexp(1.0, man);
    return static_cast<std::uint16_t>(sign | ((ev + bias) << man) | static_cast<unsigned>(frac));
  }
};
constexpr HalfFormat kFp16{10, 15};
constexpr HalfFormat kBf16{7, 127};

const HalfFormat& formatOf(kumiDataType_t t) { return t == kumiFloat16 ? kFp16 : kBf16; }

std::string hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

// Integer reference: exact arithmetic in 128 bits, then reduced modulo 2^bits.
template <class T>
T refInt(kumiRedOp_t op, T a, T b) {
  using U = std::make_unsigned_t<T>;
  __int128 x = a, y = b, r;
  switch (op) {
    case kumiProd: {
      // The exact product may exceed 128 bits for 64-bit operands: multiply modulo 2^128.
      unsigned __int128 p = static_cast<unsigned __int128>(x) * static_cast<unsigned __int128>(y);
      return static_cast<T>(static_cast<U>(p));
    }
    case kumiMin: r = x < y ? x : y; break;
    case kumiMax: r = x > y ? x : y; break;
    default: r = x + y; break;
  }
  return static_cast<T>(static_cast<U>(static_cast<unsigned __int128>(r)));
}

// Float reference: which results are acceptable. NaN accepts any NaN; min/max of equal
// values (only +0/-0 differ in bits) accept either operand.
template <class F>
bool floatOk(kumiRedOp_t op, F a, F b, F got, F* expected) {
  F r;
  bool eitherOperand = false;
  switch (op) {
    case kumiProd: r = a * b; break;
    case kumiMin:
    case kumiMax:
      if (std::isnan(a) || std::isnan(b)) {
        r = std::numeric_limits<F>::quiet_NaN();
      } else if (a == b) {
        r = a;
        eitherOperand = true;
      } else {
        r = (op == kumiMin) == (a < b) ? a : b;
      }
      break;
    default: r = a + b; break;
  }
  *expected = r;
  if (std::isnan(r)) return std::isnan(got);
  if (eitherOperand)
    return std::memcmp(&got, &a, sizeof(F)) == 0 || std::memcmp(&got, &b, sizeof(F)) == 0;
  return std::memcmp(&got, &r, sizeof(F)) == 0;
}

// Half reference: widen exactly, one float32 operation, round once (nearest even).
bool halfOk(const HalfFormat& f, kumiRedOp_t op, std::uint16_t a, std::uint16_t b, std::uint16_t got,
            std::uint16_t* expected) {
  const float fa = static_cast<float>(f.value(a));
  const float fb = static_cast<float>(f.value(b));
  volatile float r;  // force a float32 result, one rounding
  switch (op) {
    case kumiProd: r = fa * fb; break;
    case kumiMin:
    case kumiMax:
      if (std::isnan(fa) || std::isnan(fb)) {
        *expected = static_cast<std::uint16_t>(f.infBits() | 1);
        return f.isNaN(got);
      }
      if (fa == fb) {
        *expected = a;
        return got == a || got == b;
      }
      *expected = (op == kumiMin) == (fa < fb) ? a : b;
      return got == *expected;
    default: r = fa + fb; break;
  }
  const float rf = r;
  if (std::isnan(rf)) {
    *expected = static_cast<std::uint16_t>(f.infBits() | 1);
    return f.isNaN(got);
  }
  *expected = f.encode(static_cast<double>(rf));
  return got == *expected;
}

template <class T>
std::string showValue(T v) {
  std::ostringstream s;
  if constexpr (std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>)
    s << static_cast<int>(v);
  else if constexpr (std::is_floating_point_v<T>)
    s.precision(std::numeric_limits<T>::max_digits10), s << v;
  else
    s << v;
  return s.str();
}

// Checks element i of a reduction of type t; on mismatch fills *why.
template <class T>
bool checkTyped(kumiDataType_t t, kumiRedOp_t op, const void* a, const void* b, const void* got,
                std::size_t i, std::string* why) {
  T x, y, g;
  std::memcpy(&x, static_cast<const char*>(a) + i * sizeof(T), sizeof(T));
  std::memcpy(&y, static_cast<const char*>(b) + i * sizeof(T), sizeof(T));
  std::memcpy(&g, static_cast<const char*>(got) + i * sizeof(T), sizeof(T));
  const kumiRedOp_t eop = op == kumiAvg ? kumiSum : op;  // avg reduces as sum
  if constexpr (std::is_same_v<T, std::uint16_t>) {
    std::uint16_t e;
    if (halfOk(formatOf(t), eop, x, y, g, &e)) return true;
    *why = "a=" + hex16(x) + " b=" + hex16(y) + " got=" + hex16(g) + " expected=" + hex16(e) + " (" +
           showValue(formatOf(t).value(x)) + " " + opStr(op) + " " + showValue(formatOf(t).value(y)) + ")";
    return false;
  } else if constexpr (std::is_floating_point_v<T>) {
    T e;
    if (floatOk<T>(eop, x, y, g, &e)) return true;
    *why = "a=" + showValue(x) + " b=" + showValue(y) + " got=" + showValue(g) + " expected=" + showValue(e);
    return false;
  } else {
    T e = refInt<T>(eop, x, y);
    if (e == g) return true;
    *why = "a=" + showValue(x) + " b=" + showValue(y) + " got=" + showValue(g) + " expected=" + showValue(e);
    return false;
  }
}

bool checkElement(kumiDataType_t t, kumiRedOp_t op, const void* a, const void* b, const void* got,
                  std::size_t i, std::string* why) {
  switch (t) {
    case kumiInt8: return checkTyped<std::int8_t>(t, op, a, b, got, i, why);
    case kumiUint8: return checkTyped<std::uint8_t>(t, op, a, b, got, i, why);
    case kumiInt32: return checkTyped<std::int32_t>(t, op, a, b, got, i, why);
    case kumiUint32: return checkTyped<std::uint32_t>(t, op, a, b, got, i, why);
    case kumiInt64: return checkTyped<std::int64_t>(t, op, a, b, got, i, why);
    case kumiUint64: return checkTyped<std::uint64_t>(t, op, a, b, got, i, why);
    case kumiFloat16: case kumiBfloat16: return checkTyped<std::uint16_t>(t, op, a, b, got, i, why);
    case kumiFloat32: return checkTyped<float>(t, op, a, b, got, i, why);
    case kumiFloat64: return checkTyped<double>(t, op, a, b, got, i, why);
    default: return false;
  }
}

// Random inputs: a mix of arbitrary bit patterns (NaN, Inf, subnormals, extreme integers) and
// moderate values whose sums and products round in interesting ways.
void fillRandom(kumiDataType_t t, void* out, std::size_t n, std::mt19937_64& rng) {
  auto* p = static_cast<unsigned char*>(out);
  const std::size_t es = elemSize(t);
  std::uniform_real_distribution<double> moderate(-8.0, 8.0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t bits = rng();
    bool raw = (bits & 3) == 0;  // one in four: raw bits
    bits = rng();
    switch (t) {
      case kumiFloat16: case kumiBfloat16: {
        std::uint16_t h = raw ? static_cast<std::uint16_t>(bits) : formatOf(t).encode(static_cast<float>(moderate(rng)));
        std::memcpy(p + i * es, &h, 2);
        break;
      }
      case kumiFloat32: {
        float f = raw ? std::bit_cast<float>(static_cast<std::uint32_t>(bits)) : static_cast<float>(moderate(rng));
        std::memcpy(p + i * es, &f, 4);
        break;
      }
      case kumiFloat64: {
        double d = raw ? std::bit_cast<double>(bits) : moderate(rng);
        std::memcpy(p + i * es, &d, 8);
        break;
      }
      default:
        if (!raw) bits = (bits & 0xff) - 128 + (bits & 0x100 ? 0 : 1ull << (8 * es - 1));  // near 0 or near the signed edge
        std::memcpy(p + i * es, &bits, es);  // little-endian: low bytes
        break;
    }
  }
}

const std::vector<std::int64_t>& targets() {
  static const std::vector<std::int64_t> all = kumi::reduceTargetsAvailable();
  return all;
}

class ReduceOnTarget : public ::testing::TestWithParam<std::int64_t> {
 public:
  void SetUp() override {
    target_ = GetParam();
    name_ = kumi::reduceTargetName(target_);
    kumi::forceReduceTarget(target_);
  }
  void TearDown() override { kumi::forceReduceTarget(0); }

  std::string where(kumiDataType_t t, kumiRedOp_t op) const {
    return "[target " + name_ + "] " + typeStr(t) + " " + opStr(op);
  }

  // Runs dst = a op b with n copies of (a, b), plus one of (b, a), and checks every element.
  template <class T>
  void expectAll(kumiDataType_t t, kumiRedOp_t op, T a, T b, T expected, const char* what) {
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{200}}) {
      std::vector<T> va(n, a), vb(n, b), out(n);
      kumi::reduceBuffers(t, op, out.data(), va.data(), vb.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        bool ok;
        if constexpr (std::is_floating_point_v<T>) {
          ok = std::isnan(expected) ? std::isnan(out[i]) : std::memcmp(&out[i], &expected, sizeof(T)) == 0;
        } else if constexpr (std::is_same_v<T, std::uint16_t>) {
          ok = formatOf(t).isNaN(expected) ? formatOf(t).isNaN(out[i]) : out[i] == expected;
        } else {
          ok = out[i] == expected;
        }
        if (!ok) {
          std::string got, exp;
          if constexpr (std::is_same_v<T, std::uint16_t>) got = hex16(out[i]), exp = hex16(expected);
          else got = showValue(out[i]), exp = showValue(expected);
          ADD_FAILURE() << where(t, op) << " " << what << ": n=" << n << " index " << i << " got " << got
                        << ", expected " << exp;
          break;
        }
      }
    }
  }

  std::int64_t target_ = 0;
  std::string name_;
};

TEST_P(ReduceOnTarget, ForcingSelectsTheTarget) {
  auto now = kumi::reduceTargetsAvailable();
  ASSERT_EQ(now.size(), 1u) << "[target " << name_ << "] forceReduceTarget did not restrict the targets";
  EXPECT_EQ(now.front(), target_) << name_;
  EXPECT_EQ(kumi::reduceTargetName(), name_);
  EXPECT_FALSE(name_.empty());
}

TEST_P(ReduceOnTarget, MatchesReferenceForAllTypesOpsLengthsAndAliasing) {
  std::mt19937_64 rng(0x6b756d69u + static_cast<std::uint64_t>(target_));
  const std::size_t lengths[] = {0, 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 1000, 4097};
  int failures = 0;
  for (int ti = 0; ti < kumiNumTypes; ++ti) {
    const auto t = static_cast<kumiDataType_t>(ti);
    const std::size_t es = elemSize(t);
    for (int oi = 0; oi < kumiNumOps; ++oi) {
      const auto op = static_cast<kumiRedOp_t>(oi);
      for (std::size_t n : lengths) {
        // Inputs start one element into their buffers (not vector-aligned); guard elements after
        // dst must stay untouched.
        const std::size_t guard = 64;
        std::vector<unsigned char> a((n + 1) * es), b((n + 1) * es);
        fillRandom(t, a.data() + es, n, rng);
        fillRandom(t, b.data() + es, n, rng);
        for (int alias = 0; alias < 3 && failures < 20; ++alias) {
          std::vector<unsigned char> dst((n + 1 + guard) * es, 0xA5);
          unsigned char* d = dst.data() + es;
          const void* pa = a.data() + es;
          const void* pb = b.data() + es;
          if (alias == 1) {
            std::memcpy(d, pa, n * es);
            kumi::reduceBuffers(t, op, d, d, pb, n);
          } else if (alias == 2) {
            std::memcpy(d, pb, n * es);
            kumi::reduceBuffers(t, op, d, pa, d, n);
          } else {
            kumi::reduceBuffers(t, op, d, pa, pb, n);
          }
          const char* aliasName[] = {"separate dst", "dst==a", "dst==b"};
          for (std::size_t i = 0; i < n; ++i) {
            std::string why;
            if (!checkElement(t, op, pa, pb, d, i, &why)) {
              ADD_FAILURE() << where(t, op) << " n=" << n << " (" << aliasName[alias] << ") index " << i << ": "
                            << why;
              ++failures;
              break;
            }
          }
          bool guardOk = std::all_of(dst.begin(), dst.begin() + static_cast<std::ptrdiff_t>(es),
                                     [](unsigned char c) { return c == 0xA5; }) &&
                         std::all_of(dst.begin() + static_cast<std::ptrdiff_t>((n + 1) * es), dst.end(),
                                     [](unsigned char c) { return c == 0xA5; });
          if (!guardOk) {
            ADD_FAILURE() << where(t, op) << " n=" << n << " (" << aliasName[alias]
                          << "): wrote outside [dst, dst+n)";
            ++failures;
          }
        }
      }
    }
  }
}

TEST_P(ReduceOnTarget, IntegersWrapOnOverflow) {
  expectAll<std::int8_t>(kumiInt8, kumiSum, 127, 1, -128, "127+1");
  expectAll<std::int8_t>(kumiInt8, kumiSum, -128, -1, 127, "-128+-1");
  expectAll<std::int8_t>(kumiInt8, kumiAvg, 100, 100, -56, "avg sums with wrap");
  expectAll<std::int8_t>(kumiInt8, kumiProd, 16, 16, 0, "16*16");
  expectAll<std::int8_t>(kumiInt8, kumiProd, -128, -1, -128, "-128*-1");
  expectAll<std::int8_t>(kumiInt8, kumiProd, 11, 13, static_cast<std::int8_t>(143 - 256), "11*13");
  expectAll<std::uint8_t>(kumiUint8, kumiSum, 255, 1, 0, "255+1");
  expectAll<std::uint8_t>(kumiUint8, kumiProd, 200, 2, 144, "200*2");
  expectAll<std::int32_t>(kumiInt32, kumiSum, INT32_MAX, 1, INT32_MIN, "INT32_MAX+1");
  expectAll<std::int32_t>(kumiInt32, kumiProd, 65536, 65536, 0, "2^16*2^16");
  expectAll<std::int32_t>(kumiInt32, kumiProd, 0x10001, 0x10001, 0x20001, "(2^16+1)^2");
  expectAll<std::int32_t>(kumiInt32, kumiProd, INT32_MIN, -1, INT32_MIN, "INT32_MIN*-1");
  expectAll<std::uint32_t>(kumiUint32, kumiSum, 0xffffffffu, 2u, 1u, "UINT32_MAX+2");
  expectAll<std::uint32_t>(kumiUint32, kumiProd, 0xffffffffu, 0xffffffffu, 1u, "UINT32_MAX^2");
  expectAll<std::uint32_t>(kumiUint32, kumiProd, 0x80000000u, 2u, 0u, "2^31*2");
  expectAll<std::int64_t>(kumiInt64, kumiSum, INT64_MAX, 1, INT64_MIN, "INT64_MAX+1");
  expectAll<std::int64_t>(kumiInt64, kumiProd, std::int64_t{1} << 32, std::int64_t{1} << 32, 0, "2^32*2^32");
  expectAll<std::int64_t>(kumiInt64, kumiProd, INT64_MIN, -1, INT64_MIN, "INT64_MIN*-1");
  expectAll<std::uint64_t>(kumiUint64, kumiSum, UINT64_MAX, 1u, 0u, "UINT64_MAX+1");
  expectAll<std::uint64_t>(kumiUint64, kumiProd, (std::uint64_t{1} << 32) + 1, (std::uint64_t{1} << 32) + 1,
                           (std::uint64_t{1} << 33) + 1, "(2^32+1)^2");
}

TEST_P(ReduceOnTarget, IntegerMinMaxRespectSignedness) {
  expectAll<std::int8_t>(kumiInt8, kumiMin, -128, 127, -128, "min(-128,127)");
  expectAll<std::int8_t>(kumiInt8, kumiMax, -128, 127, 127, "max(-128,127)");
  expectAll<std::uint8_t>(kumiUint8, kumiMax, 0, 255, 255, "max(0,255)");
  expectAll<std::uint8_t>(kumiUint8, kumiMin, 128, 127, 127, "min(128,127)");
  expectAll<std::int32_t>(kumiInt32, kumiMin, INT32_MIN, INT32_MAX, INT32_MIN, "min");
  expectAll<std::uint32_t>(kumiUint32, kumiMax, 0x80000000u, 1u, 0x80000000u, "max(2^31,1)");
  expectAll<std::uint32_t>(kumiUint32, kumiMin, 0x80000000u, 1u, 1u, "min(2^31,1)");
  expectAll<std::int64_t>(kumiInt64, kumiMin, INT64_MIN, INT64_MAX, INT64_MIN, "min");
  expectAll<std::int64_t>(kumiInt64, kumiMax, -1, (std::int64_t{1} << 40), (std::int64_t{1} << 40), "max");
  expectAll<std::int64_t>(kumiInt64, kumiMin, -(std::int64_t{1} << 40) - 1, -(std::int64_t{1} << 40),
                          -(std::int64_t{1} << 40) - 1, "min high words equal");
  expectAll<std::uint64_t>(kumiUint64, kumiMin, std::uint64_t{1} << 63, 1u, 1u, "min(2^63,1)");
  expectAll<std::uint64_t>(kumiUint64, kumiMax, std::uint64_t{1} << 63, 1u, std::uint64_t{1} << 63, "max(2^63,1)");
  expectAll<std::uint64_t>(kumiUint64, kumiMax, 0xffffffffull, 0x100000000ull, 0x100000000ull, "max across 32 bits");
}

// NaN, Inf and signed zero for float32 and float64.
template <class F>
void floatSpecials(ReduceOnTarget& self, kumiDataType_t t) {
  const F nan = std::numeric_limits<F>::quiet_NaN();
  const F inf = std::numeric_limits<F>::infinity();
  for (kumiRedOp_t op : {kumiMin, kumiMax, kumiSum, kumiProd, kumiAvg}) {
    self.expectAll<F>(t, op, nan, F(1), nan, "NaN first");
    self.expectAll<F>(t, op, F(1), nan, nan, "NaN second");
    self.expectAll<F>(t, op, nan, nan, nan, "NaN both");
  }
  self.expectAll<F>(t, kumiMin, nan, -inf, nan, "min(NaN,-Inf)");
  self.expectAll<F>(t, kumiMin, -inf, nan, nan, "min(-Inf,NaN)");
  self.expectAll<F>(t, kumiMax, nan, inf, nan, "max(NaN,Inf)");
  self.expectAll<F>(t, kumiMax, inf, nan, nan, "max(Inf,NaN)");
  self.expectAll<F>(t, kumiSum, inf, -inf, nan, "Inf+-Inf");
  self.expectAll<F>(t, kumiProd, inf, F(0), nan, "Inf*0");
  self.expectAll<F>(t, kumiProd, F(0), -inf, nan, "0*-Inf");
  self.expectAll<F>(t, kumiSum, inf, F(1), inf, "Inf+1");
  self.expectAll<F>(t, kumiProd, -inf, F(-2), inf, "-Inf*-2");
  self.expectAll<F>(t, kumiMin, inf, F(3), F(3), "min(Inf,3)");
  self.expectAll<F>(t, kumiMax, -inf, F(-3), F(-3), "max(-Inf,-3)");
  self.expectAll<F>(t, kumiMax, std::numeric_limits<F>::max(), std::numeric_limits<F>::max() / 2,
                    std::numeric_limits<F>::max(), "max of big values");
  self.expectAll<F>(t, kumiSum, std::numeric_limits<F>::max(), std::numeric_limits<F>::max(), inf, "overflow");
  self.expectAll<F>(t, kumiSum, F(-0.0), F(-0.0), F(-0.0), "-0 + -0");
  self.expectAll<F>(t, kumiSum, F(-0.0), F(0.0), F(0.0), "-0 + +0");
  self.expectAll<F>(t, kumiProd, F(-0.0), F(5), F(-0.0), "-0 * 5");
  self.expectAll<F>(t, kumiProd, F(-1), F(0), F(-0.0), "-1 * 0");
  const F denorm = std::numeric_limits<F>::denorm_min();
  self.expectAll<F>(t, kumiSum, denorm, denorm, denorm * 2, "subnormals are not flushed");
}

TEST_P(ReduceOnTarget, Float32NaNInfAndSignedZero) { floatSpecials<float>(*this, kumiFloat32); }
TEST_P(ReduceOnTarget, Float64NaNInfAndSignedZero) { floatSpecials<double>(*this, kumiFloat64); }

// min/max of +0 and -0: either zero is acceptable, but the answer must not depend on whether an
// element falls in a vector body or in the scalar tail.
TEST_P(ReduceOnTarget, MinMaxOfSignedZerosIsAZeroAndPositionIndependent) {
  const std::size_t n = 4097;
  auto run = [&](kumiDataType_t t, kumiRedOp_t op, auto zeroA, auto zeroB, auto isZero) {
    using T = decltype(zeroA);
    std::vector<T> a(n, zeroA), b(n, zeroB), out(n);
    kumi::reduceBuffers(t, op, out.data(), a.data(), b.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(isZero(out[i])) << where(t, op) << " index " << i;
      ASSERT_EQ(std::memcmp(&out[i], &out[0], sizeof(T)), 0)
          << where(t, op) << ": element " << i << " differs in sign from element 0";
    }
  };
  for (kumiRedOp_t op : {kumiMin, kumiMax}) {
    run(kumiFloat32, op, -0.0f, 0.0f, [](float v) { return v == 0.0f; });
    run(kumiFloat32, op, 0.0f, -0.0f, [](float v) { return v == 0.0f; });
    run(kumiFloat64, op, -0.0, 0.0, [](double v) { return v == 0.0; });
    run(kumiFloat16, op, std::uint16_t{0x8000}, std::uint16_t{0}, [](std::uint16_t v) { return (v & 0x7fff) == 0; });
    run(kumiBfloat16, op, std::uint16_t{0}, std::uint16_t{0x8000}, [](std::uint16_t v) { return (v & 0x7fff) == 0; });
  }
}

TEST_P(ReduceOnTarget, Float16RoundsToNearestEven) {
  const auto t = kumiFloat16;
  using H = std::uint16_t;
  // Spacing at 1.0 is 2^-10. 2^-11 = 0x1000.
  expectAll<H>(t, kumiSum, 0x3c00, 0x1000, 0x3c00, "1 + 2^-11 (tie, to even: down)");
  expectAll<H>(t, kumiSum, 0x3c01, 0x1000, 0x3c02, "(1+2^-10) + 2^-11 (tie, to even: up)");
  expectAll<H>(t, kumiSum, 0x3c00, 0x1001, 0x3c01, "1 + just above half an ulp");
  expectAll<H>(t, kumiSum, 0x3c00, 0x0fff, 0x3c00, "1 + just below half an ulp");
  expectAll<H>(t, kumiSum, 0xbc00, 0x9000, 0xbc00, "-1 - 2^-11 (tie)");
  expectAll<H>(t, kumiSum, 0xbc01, 0x9000, 0xbc02, "-(1+2^-10) - 2^-11 (tie)");
  expectAll<H>(t, kumiAvg, 0x3c01, 0x1000, 0x3c02, "avg sums with the same rounding");
  // Spacing at 2048 is 2.
  expectAll<H>(t, kumiSum, 0x6800, 0x3c00, 0x6800, "2048 + 1 (tie)");
  expectAll<H>(t, kumiSum, 0x6801, 0x3c00, 0x6802, "2050 + 1 (tie)");
  expectAll<H>(t, kumiProd, 0x3e00, 0x3e00, 0x4080, "1.5*1.5 exact");
  expectAll<H>(t, kumiProd, 0x3c01, 0x3c01, 0x3c02, "(1+2^-10)^2 = 1+2^-9+2^-20, rounds down");
  expectAll<H>(t, kumiProd, 0x3c03, 0x3c03, 0x3c06, "(1+3*2^-10)^2 = 1+6*2^-10+9*2^-20, rounds down");
  expectAll<H>(t, kumiProd, 0x3dff, 0x3dff, 0x407f,
               "(1535/1024)^2 = 1150.5005 * 2^-9: just above a tie, rounds up");
  // Overflow: max finite 65504 = 0x7bff; halfway to the next binade (65520) rounds to Inf.
  expectAll<H>(t, kumiSum, 0x7bff, 0x4c00, 0x7c00, "65504 + 16 = 65520 (tie) -> Inf");
  expectAll<H>(t, kumiSum, 0x7bff, 0x4bff, 0x7bff, "65504 + 15.99 -> 65504");
  expectAll<H>(t, kumiSum, 0x7bff, 0x4800, 0x7bff, "65504 + 8 -> 65504");
  expectAll<H>(t, kumiSum, 0xfbff, 0xcc00, 0xfc00, "-65504 - 16 -> -Inf");
  expectAll<H>(t, kumiProd, 0x5c00, 0x5c00, 0x7c00, "256*256 -> Inf");
  expectAll<H>(t, kumiSum, 0x7c00, 0xfc00, 0x7e00, "Inf + -Inf = NaN");
  expectAll<H>(t, kumiProd, 0x7c00, 0x0000, 0x7e00, "Inf * 0 = NaN");
  expectAll<H>(t, kumiSum, 0x7c00, 0x3c00, 0x7c00, "Inf + 1 = Inf");
  expectAll<H>(t, kumiMax, 0xfc00, 0x3c00, 0x3c00, "max(-Inf, 1)");
  // Subnormals (2^-24 = 0x0001, min normal 2^-14 = 0x0400).
  expectAll<H>(t, kumiSum, 0x0400, 0x8001, 0x03ff, "2^-14 - 2^-24 -> largest subnormal");
  expectAll<H>(t, kumiSum, 0x0001, 0x0001, 0x0002, "2^-24 + 2^-24");
  expectAll<H>(t, kumiSum, 0x03ff, 0x0001, 0x0400, "largest subnormal + 2^-24 -> min normal");
  expectAll<H>(t, kumiProd, 0x0001, 0x3800, 0x0000, "2^-24 * 0.5 (tie) -> +0");
  expectAll<H>(t, kumiProd, 0x0003, 0x3800, 0x0002, "3*2^-24 * 0.5 (tie) -> 2*2^-24");
  expectAll<H>(t, kumiProd, 0x0005, 0x3800, 0x0002, "5*2^-24 * 0.5 (tie) -> 2*2^-24");
  expectAll<H>(t, kumiProd, 0x0001, 0x3a00, 0x0001, "2^-24 * 0.75 -> 2^-24");
  expectAll<H>(t, kumiProd, 0x8001, 0x3400, 0x8000, "-2^-24 * 0.25 -> -0");
  expectAll<H>(t, kumiProd, 0x0400, 0x3400, 0x0100, "2^-14 * 0.25 -> subnormal, exact");
  expectAll<H>(t, kumiProd, 0x0401, 0x3800, 0x0200, "(2^-14 + 2^-24) * 0.5 (tie) -> even");
  expectAll<H>(t, kumiProd, 0x0403, 0x3800, 0x0202, "(2^-14 + 3*2^-24) * 0.5 (tie) -> even");
  expectAll<H>(t, kumiSum, 0x8000, 0x8000, 0x8000, "-0 + -0 = -0");
  expectAll<H>(t, kumiSum, 0x8000, 0x0000, 0x0000, "-0 + +0 = +0");
  // NaN propagation in both positions (quiet and signalling inputs).
  for (H nan : {H{0x7e00}, H{0x7c01}, H{0xfe00}, H{0x7fff}}) {
    for (kumiRedOp_t op : {kumiMin, kumiMax, kumiSum, kumiProd}) {
      expectAll<H>(t, op, nan, 0x3c00, 0x7e00, "NaN first");
      expectAll<H>(t, op, 0x3c00, nan, 0x7e00, "NaN second");
    }
    expectAll<H>(t, kumiMin, nan, 0xfc00, 0x7e00, "min(NaN,-Inf)");
    expectAll<H>(t, kumiMax, 0x7c00, nan, 0x7e00, "max(Inf,NaN)");
  }
}

TEST_P(ReduceOnTarget, Float16HandCasesAgreeWithReference) {
  // Guards the hand-written expectations above against a slip in their arithmetic.
  EXPECT_EQ(kFp16.encode(double(1.0f + 0x1p-11f)), 0x3c00);
  EXPECT_EQ(kFp16.encode(65520.0), 0x7c00);
  EXPECT_EQ(kFp16.encode(65519.99), 0x7bff);
  EXPECT_EQ(kFp16.encode(1.5 * 0x1p-24), 0x0002);
  EXPECT_EQ(kFp16.encode(0.5 * 0x1p-24), 0x0000);
  EXPECT_EQ(kFp16.encode(double(static_cast<float>(kFp16.value(0x3dff)) * static_cast<float>(kFp16.value(0x3dff)))),
            0x407f);
  EXPECT_EQ(kFp16.encode(double(static_cast<float>(kFp16.value(0x3c03)) * static_cast<float>(kFp16.value(0x3c03)))),
            0x3c06);
}

TEST_P(ReduceOnTarget, Bfloat16RoundsToNearestEven) {
  const auto t = kumiBfloat16;
  using H = std::uint16_t;
  // Spacing at 1.0 is 2^-7; 2^-8 = 0x3b80.
  expectAll<H>(t, kumiSum, 0x3f80, 0x3b80, 0x3f80, "1 + 2^-8 (tie, down to even)");
  expectAll<H>(t, kumiSum, 0x3f81, 0x3b80, 0x3f82, "(1+2^-7) + 2^-8 (tie, up to even)");
  expectAll<H>(t, kumiSum, 0x3f80, 0x3b81, 0x3f81, "1 + just above half an ulp");
  expectAll<H>(t, kumiSum, 0x3f80, 0x3b7f, 0x3f80, "1 + just below half an ulp");
  expectAll<H>(t, kumiSum, 0xbf81, 0xbb80, 0xbf82, "negative tie");
  expectAll<H>(t, kumiProd, 0x3f81, 0x3f81, 0x3f82, "(1+2^-7)^2 = 1+2^-6+2^-14 -> down");
  // Overflow: max finite 0x7f7f; adding half its ulp (2^119 = 0x7b00) is a tie -> Inf.
  expectAll<H>(t, kumiSum, 0x7f7f, 0x7b00, 0x7f80, "max + half ulp (tie) -> Inf");
  expectAll<H>(t, kumiSum, 0x7f7f, 0x7a80, 0x7f7f, "max + quarter ulp -> max");
  expectAll<H>(t, kumiSum, 0xff7f, 0xfb00, 0xff80, "-max - half ulp -> -Inf");
  expectAll<H>(t, kumiSum, 0x7f80, 0xff80, 0x7fc0, "Inf + -Inf = NaN");
  expectAll<H>(t, kumiProd, 0xff80, 0x0000, 0x7fc0, "-Inf * 0 = NaN");
  // Subnormals (2^-133 = 0x0001).
  expectAll<H>(t, kumiSum, 0x0001, 0x0001, 0x0002, "subnormal sum");
  expectAll<H>(t, kumiSum, 0x0080, 0x8001, 0x007f, "min normal - 2^-133");
  expectAll<H>(t, kumiProd, 0x0003, 0x3f00, 0x0002, "3*2^-133 * 0.5 (tie) -> even");
  expectAll<H>(t, kumiProd, 0x0001, 0x3f00, 0x0000, "2^-133 * 0.5 (tie) -> 0");
  expectAll<H>(t, kumiSum, 0x8000, 0x8000, 0x8000, "-0 + -0 = -0");
  // NaN stays NaN, including payloads whose rounding would carry into the exponent or sign.
  for (H nan : {H{0x7fc0}, H{0x7f81}, H{0xffff}, H{0x7fff}, H{0xff80 | 1}}) {
    for (kumiRedOp_t op : {kumiMin, kumiMax, kumiSum, kumiProd, kumiAvg}) {
      expectAll<H>(t, op, nan, 0x3f80, 0x7fc0, "NaN first");
      expectAll<H>(t, op, 0x3f80, nan, 0x7fc0, "NaN second");
    }
  }
  EXPECT_EQ(kBf16.encode(std::ldexp(255.0, 120) + std::ldexp(1.0, 119)), 0x7f80);  // reference agrees
}

INSTANTIATE_TEST_SUITE_P(AllTargets, ReduceOnTarget, ::testing::ValuesIn(targets()),
                         [](const ::testing::TestParamInfo<std::int64_t>& param) {
                           std::string n = kumi::reduceTargetName(param.param);
                           for (auto& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(ReduceTargets, AvailableTargetsAreRestoredAfterForcing) {
  const auto& all = targets();
  ASSERT_FALSE(all.empty());
  kumi::forceReduceTarget(all.back());
  EXPECT_EQ(kumi::reduceTargetsAvailable().size(), 1u);
  kumi::forceReduceTarget(0);
  EXPECT_EQ(kumi::reduceTargetsAvailable(), all);
  // The automatic choice is the best target (Highway orders the best first).
  EXPECT_EQ(kumi::reduceTargetName(), kumi::reduceTargetName(all.front()));
}

// ---------------------------------------------------------------------------------------------
// divideInPlace: the final step of kumiAvg.

template <class T>
void expectIntDivision(kumiDataType_t t, std::vector<T> values, std::uint64_t divisor) {
  std::vector<T> buf = values;
  kumi::divideInPlace(t, buf.data(), buf.size(), divisor);
  int failures = 0;
  for (std::size_t i = 0; i < values.size() && failures < 3; ++i) {
    // Mathematical quotient truncated toward zero, in 128 bits (no narrowing of the divisor).
    __int128 q = static_cast<__int128>(values[i]) / static_cast<__int128>(divisor);
    if (static_cast<__int128>(buf[i]) != q) {
      ++failures;
      ADD_FAILURE() << typeStr(t) << ": " << showValue(values[i]) << " / " << divisor << " gave " << showValue(buf[i])
                    << ", expected " << static_cast<long long>(q);
    }
  }
}

template <class T>
std::vector<T> intSamples(std::mt19937_64& rng) {
  std::vector<T> v = {std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), T(0), T(1), T(7),
                      T(100), static_cast<T>(std::numeric_limits<T>::max() - 1)};
  if constexpr (std::is_signed_v<T>) {
    for (T x : {T(-1), T(-2), T(-7), T(-100), static_cast<T>(std::numeric_limits<T>::min() + 1)}) v.push_back(x);
  }
  for (int i = 0; i < 100; ++i) v.push_back(static_cast<T>(rng()));
  return v;
}

TEST(DivideInPlace, IntegersTruncateTowardZero) {
  expectIntDivision<std::int8_t>(kumiInt8, {-7, 7, -128, 127, 0, -1, 1, -3, 3}, 2);
  expectIntDivision<std::int8_t>(kumiInt8, {-7, 7, -128, 127, -2, 2}, 3);
  std::vector<std::int8_t> v = {-7, 7, -128, 127};
  kumi::divideInPlace(kumiInt8, v.data(), v.size(), 2);
  EXPECT_EQ(v, (std::vector<std::int8_t>{-3, 3, -64, 63}));  // -3, not -4: truncation, not floor
  std::mt19937_64 rng(7);
  for (std::uint64_t d : {2ull, 3ull, 4ull, 5ull, 7ull, 8ull, 10ull, 64ull, 100ull, 127ull}) {
    expectIntDivision<std::int8_t>(kumiInt8, intSamples<std::int8_t>(rng), d);
    expectIntDivision<std::uint8_t>(kumiUint8, intSamples<std::uint8_t>(rng), d);
    expectIntDivision<std::int32_t>(kumiInt32, intSamples<std::int32_t>(rng), d);
    expectIntDivision<std::uint32_t>(kumiUint32, intSamples<std::uint32_t>(rng), d);
    expectIntDivision<std::int64_t>(kumiInt64, intSamples<std::int64_t>(rng), d);
    expectIntDivision<std::uint64_t>(kumiUint64, intSamples<std::uint64_t>(rng), d);
  }
  for (std::uint64_t d : {1000ull, 4096ull, 1000000ull}) {
    expectIntDivision<std::int32_t>(kumiInt32, intSamples<std::int32_t>(rng), d);
    expectIntDivision<std::int64_t>(kumiInt64, intSamples<std::int64_t>(rng), d);
    expectIntDivision<std::uint64_t>(kumiUint64, intSamples<std::uint64_t>(rng), d);
  }
}

// The divisor is a rank count; it may exceed the range of an 8-bit element type (avg over 200 or
// 300 ranks). The quotient must still be the truncated mathematical one (|x| < divisor -> 0).
TEST(DivideInPlace, DivisorLargerThanTheElementTypeRange) {
  std::mt19937_64 rng(11);
  expectIntDivision<std::int8_t>(kumiInt8, intSamples<std::int8_t>(rng), 128);
  expectIntDivision<std::int8_t>(kumiInt8, intSamples<std::int8_t>(rng), 200);
  expectIntDivision<std::uint8_t>(kumiUint8, intSamples<std::uint8_t>(rng), 300);
  expectIntDivision<std::uint8_t>(kumiUint8, intSamples<std::uint8_t>(rng), 257);
}

// Divisor 256 for uint8 (a 256-rank average); isolated in a child process because a narrowed
// divisor of 0 would raise SIGFPE.
[[noreturn]] void divideUint8By256AndExit() {
  std::vector<std::uint8_t> v = {255, 128, 1, 0};
  kumi::divideInPlace(kumiUint8, v.data(), v.size(), 256);
  std::exit(v == std::vector<std::uint8_t>{0, 0, 0, 0} ? 0 : 3);
}

TEST(DivideInPlaceDeathTest, Uint8DivisorOf256DoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(divideUint8By256AndExit(), ::testing::ExitedWithCode(0), "")
      << "uint8 divideInPlace by 256 must not crash (SIGFPE) and must give 0 for every value (exit 3: wrong values)";
}

TEST(DivideInPlace, DivisorZeroAndOneLeaveValuesUnchanged) {
  std::vector<std::int32_t> v = {5, -5, 7};
  kumi::divideInPlace(kumiInt32, v.data(), v.size(), 1);
  EXPECT_EQ(v, (std::vector<std::int32_t>{5, -5, 7}));
  kumi::divideInPlace(kumiInt32, v.data(), v.size(), 0);
  EXPECT_EQ(v, (std::vector<std::int32_t>{5, -5, 7}));
  std::vector<float> f = {1.5f};
  kumi::divideInPlace(kumiFloat32, f.data(), 1, 1);
  EXPECT_EQ(f[0], 1.5f);
  kumi::divideInPlace(kumiFloat32, f.data(), 0, 2);  // n = 0 touches nothing
  EXPECT_EQ(f[0], 1.5f);
}

TEST(DivideInPlace, FloatsDivide) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  for (std::uint64_t d : {2ull, 3ull, 7ull, 10ull, 1000ull}) {
    std::vector<float> f(257);
    std::vector<double> g(257);
    for (auto& x : f) x = static_cast<float>(dist(rng));
    for (auto& x : g) x = dist(rng);
    f[0] = std::numeric_limits<float>::infinity();
    f[1] = -0.0f;
    f[2] = std::numeric_limits<float>::denorm_min() * 5;
    auto f0 = f;
    auto g0 = g;
    kumi::divideInPlace(kumiFloat32, f.data(), f.size(), d);
    kumi::divideInPlace(kumiFloat64, g.data(), g.size(), d);
    for (std::size_t i = 0; i < f.size(); ++i) {
      float ef = f0[i] / static_cast<float>(d);
      EXPECT_EQ(std::memcmp(&ef, &f[i], 4), 0) << "float32 " << f0[i] << " / " << d << " gave " << f[i];
      double eg = g0[i] / static_cast<double>(d);
      EXPECT_EQ(std::memcmp(&eg, &g[i], 8), 0) << "float64 " << g0[i] << " / " << d << " gave " << g[i];
    }
  }
  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
  kumi::divideInPlace(kumiFloat32, nan.data(), 1, 4);
  EXPECT_TRUE(std::isnan(nan[0]));
}

TEST(DivideInPlace, HalvesDivideInFloatAndRoundOnce) {
  for (kumiDataType_t t : {kumiFloat16, kumiBfloat16}) {
    const HalfFormat& f = formatOf(t);
    for (std::uint64_t d : {2ull, 3ull, 5ull, 7ull, 1000ull}) {
      std::vector<std::uint16_t> v(65536);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint16_t>(i);  // every pattern
      kumi::divideInPlace(t, v.data(), v.size(), d);
      int failures = 0;
      for (std::size_t i = 0; i < v.size() && failures < 5; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        float q = static_cast<float>(f.value(h)) / static_cast<float>(d);
        if (std::isnan(q)) {
          if (!f.isNaN(v[i])) ++failures, ADD_FAILURE() << typeStr(t) << " " << hex16(h) << " / " << d << ": NaN expected";
          continue;
        }
        std::uint16_t e = f.encode(static_cast<double>(q));
        if (v[i] != e)
          ++failures, ADD_FAILURE() << typeStr(t) << " " << hex16(h) << " / " << d << " gave " << hex16(v[i])
                                    << ", expected " << hex16(e);
      }
    }
  }
  // Hand-checked ties.
  std::vector<std::uint16_t> h = {0x0001, 0x0003, 0x0005, 0x0007, 0x3c00};
  kumi::divideInPlace(kumiFloat16, h.data(), h.size(), 2);
  EXPECT_EQ(h, (std::vector<std::uint16_t>{0x0000, 0x0002, 0x0002, 0x0004, 0x3800}));
  std::vector<std::uint16_t> third = {0x3c00};
  kumi::divideInPlace(kumiFloat16, third.data(), 1, 3);
  EXPECT_EQ(third[0], 0x3555);  // 1/3 -> 0.333251953125
  std::vector<std::uint16_t> b = {0x0001, 0x0003, 0x3f80};
  kumi::divideInPlace(kumiBfloat16, b.data(), 2, 2);
  kumi::divideInPlace(kumiBfloat16, b.data() + 2, 1, 3);
  EXPECT_EQ(b, (std::vector<std::uint16_t>{0x0000, 0x0002, 0x3eab}));
}

}  // namespace
