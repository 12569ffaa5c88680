// Highway compiles this file once per SIMD target (foreach_target.h re-includes it); HWY_ONCE
// marks the part compiled once, which holds the dispatching entry points.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "core/reduce_kernels.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <cstring>

#include "core/half.hpp"
#include "core/reduce.hpp"
#include "core/reduce_op.hpp"

HWY_BEFORE_NAMESPACE();
namespace kumi {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D, class V>
HWY_INLINE V vectorOp(D d, kumiRedOp_t op, V a, V b) {
  using T = hn::TFromD<D>;
  switch (op) {
    case kumiProd: return hn::Mul(a, b);
    case kumiMin:
      if constexpr (hwy::IsFloat<T>()) {
        V m = hn::IfThenElse(hn::IsNaN(b), b, hn::Min(a, b));
        return hn::IfThenElse(hn::IsNaN(a), a, m);
      } else {
        return hn::Min(a, b);
      }
    case kumiMax:
      if constexpr (hwy::IsFloat<T>()) {
        V m = hn::IfThenElse(hn::IsNaN(b), b, hn::Max(a, b));
        return hn::IfThenElse(hn::IsNaN(a), a, m);
      } else {
        return hn::Max(a, b);
      }
    default: (void)d; return hn::Add(a, b);
  }
}

// Native element types. Highway lacks 8- and 64-bit integer multiplies; those fall back to a
// plain loop that the compiler vectorises for the current target.
template <class T>
void reduceNative(kumiRedOp_t op, T* dst, const T* a, const T* b, size_t n) {
  constexpr bool kNoSimdMul = std::is_integral_v<T> && (sizeof(T) == 1 || sizeof(T) == 8);
  size_t i = 0;
  if (!(kNoSimdMul && op == kumiProd)) {
    const hn::ScalableTag<T> d;
    const size_t lanes = hn::Lanes(d);
    for (; i + lanes <= n; i += lanes) {
      auto va = hn::LoadU(d, a + i);
      auto vb = hn::LoadU(d, b + i);
      if constexpr (kNoSimdMul) {
        hn::StoreU(op == kumiMin ? hn::Min(va, vb) : op == kumiMax ? hn::Max(va, vb) : hn::Add(va, vb), d, dst + i);
      } else {
        hn::StoreU(vectorOp(d, op, va, vb), d, dst + i);
      }
    }
  }
  for (; i < n; ++i) dst[i] = scalarOp<T>(op, a[i], b[i]);
}

// bfloat16 <-> float32 with integer ops: widening is a shift, narrowing rounds to nearest even.
template <class DF, class DU16>
HWY_INLINE hn::Vec<DF> loadBf16(DF df, DU16 du16, const uint16_t* p) {
  const hn::RebindToUnsigned<DF> du32;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
}
template <class DF, class DU16>
HWY_INLINE void storeBf16(DF /*df*/, DU16 du16, hn::Vec<DF> v, uint16_t* p) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::RebindToSigned<DF> di32;
  auto u = hn::BitCast(du32, v);
  auto bias = hn::Add(hn::Set(du32, 0x7fffu), hn::And(hn::ShiftRight<16>(u), hn::Set(du32, 1u)));
  auto rounded = hn::ShiftRight<16>(hn::Add(u, bias));
  auto quietNan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du32, 0x40u));
  auto bits = hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), quietNan, rounded);
  hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, bits)), du16, p);
}

void reduceBf16(kumiRedOp_t op, uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto r = vectorOp(df, op, loadBf16(df, du16, a + i), loadBf16(df, du16, b + i));
    storeBf16(df, du16, r, dst + i);
  }
  for (; i < n; ++i) dst[i] = floatToBf16(scalarOp<float>(op, bf16ToFloat(a[i]), bf16ToFloat(b[i])));
}

void reduceFp16(kumiRedOp_t op, uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n) {
  size_t i = 0;
  // Only x86 targets with F16C (AVX2 and better) convert in hardware with round-to-nearest-even.
  // Highway's software conversion on older targets truncates and clamps, so they take the exact
  // scalar path below for every element.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const size_t lanes = hn::Lanes(df);
  auto* ha = reinterpret_cast<const hwy::float16_t*>(a);
  auto* hb = reinterpret_cast<const hwy::float16_t*>(b);
  auto* hd = reinterpret_cast<hwy::float16_t*>(dst);
  for (; i + lanes <= n; i += lanes) {
    auto r = vectorOp(df, op, hn::PromoteTo(df, hn::LoadU(dh, ha + i)), hn::PromoteTo(df, hn::LoadU(dh, hb + i)));
    hn::StoreU(hn::DemoteTo(dh, r), dh, hd + i);
  }
#endif
  for (; i < n; ++i) dst[i] = floatToFp16(scalarOp<float>(op, fp16ToFloat(a[i]), fp16ToFloat(b[i])));
}

void ReduceAny(int type, int op, void* dst, const void* a, const void* b, size_t n) {
  const auto o = static_cast<kumiRedOp_t>(op == kumiAvg ? kumiSum : op);
#define KUMI_NATIVE(T) reduceNative<T>(o, static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), n)
  switch (type) {
    case kumiInt8: KUMI_NATIVE(int8_t); break;
    case kumiUint8: KUMI_NATIVE(uint8_t); break;
    case kumiInt32: KUMI_NATIVE(int32_t); break;
    case kumiUint32: KUMI_NATIVE(uint32_t); break;
    case kumiInt64: KUMI_NATIVE(int64_t); break;
    case kumiUint64: KUMI_NATIVE(uint64_t); break;
    case kumiFloat32: KUMI_NATIVE(float); break;
    case kumiFloat64: KUMI_NATIVE(double); break;
    case kumiFloat16:
      reduceFp16(o, static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n);
      break;
    case kumiBfloat16:
      reduceBf16(o, static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n);
      break;
    default: break;
  }
#undef KUMI_NATIVE
}

}  // namespace HWY_NAMESPACE
}  // namespace kumi
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kumi {
HWY_EXPORT(ReduceAny);

void reduceBuffers(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b,
                   std::size_t n) {
  HWY_DYNAMIC_DISPATCH(ReduceAny)(type, op, dst, a, b, n);
}

namespace {
template <class T>
void divideInts(void* dst, std::size_t n, std::uint64_t divisor) {
  // Divide in 64 bits: the divisor (a rank count) may not fit the element type.
  using Wide = std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>;
  auto* p = static_cast<T*>(dst);
  const Wide d = static_cast<Wide>(divisor);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<T>(static_cast<Wide>(p[i]) / d);
}
template <class T>
void divideFloats(void* dst, std::size_t n, std::uint64_t divisor) {
  auto* p = static_cast<T*>(dst);
  const T d = static_cast<T>(divisor);
  for (std::size_t i = 0; i < n; ++i) p[i] = p[i] / d;
}
template <float (*ToF)(std::uint16_t), std::uint16_t (*FromF)(float)>
void divideHalves(void* dst, std::size_t n, std::uint64_t divisor) {
  auto* p = static_cast<std::uint16_t*>(dst);
  const float d = static_cast<float>(divisor);
  for (std::size_t i = 0; i < n; ++i) p[i] = FromF(ToF(p[i]) / d);
}
}  // namespace

void divideInPlace(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor) {
  if (divisor <= 1) return;
  switch (type) {
    case kumiInt8: divideInts<std::int8_t>(dst, n, divisor); break;
    case kumiUint8: divideInts<std::uint8_t>(dst, n, divisor); break;
    case kumiInt32: divideInts<std::int32_t>(dst, n, divisor); break;
    case kumiUint32: divideInts<std::uint32_t>(dst, n, divisor); break;
    case kumiInt64: divideInts<std::int64_t>(dst, n, divisor); break;
    case kumiUint64: divideInts<std::uint64_t>(dst, n, divisor); break;
    case kumiFloat16: divideHalves<fp16ToFloat, floatToFp16>(dst, n, divisor); break;
    case kumiBfloat16: divideHalves<bf16ToFloat, floatToBf16>(dst, n, divisor); break;
    case kumiFloat32: divideFloats<float>(dst, n, divisor); break;
    case kumiFloat64: divideFloats<double>(dst, n, divisor); break;
    default: break;
  }
}

std::string reduceTargetName(std::int64_t target) { return hwy::TargetName(target); }

std::string reduceTargetName() {
  // The dispatcher's choice is the best of the supported, compiled targets.
  auto targets = hwy::SupportedAndGeneratedTargets();
  return targets.empty() ? std::string("none") : reduceTargetName(targets.front());
}

std::vector<std::int64_t> reduceTargetsAvailable() { return hwy::SupportedAndGeneratedTargets(); }

void forceReduceTarget(std::int64_t target) { hwy::SetSupportedTargetsForTest(target); }

}  // namespace kumi
#endif  // HWY_ONCE
