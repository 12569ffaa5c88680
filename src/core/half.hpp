// Scalar float16 / bfloat16 conversions with round-to-nearest-even. The SIMD kernels use the
// hardware conversions; these serve scalar tails, tests, data generation and the CUDA kernels'
// bfloat16, and define the results the kernels must reproduce bit for bit.
#pragma once

#include <bit>
#include <cstdint>

#include "core/host_device.hpp"

namespace kumi {

KUMI_HOST_DEVICE inline float bf16ToFloat(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

KUMI_HOST_DEVICE inline std::uint16_t floatToBf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

KUMI_HOST_DEVICE inline float fp16ToFloat(std::uint16_t h) {
  std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // Inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: value = man * 2^-24
    float v = static_cast<float>(man) * 0x1p-24f;
    bits = sign | std::bit_cast<std::uint32_t>(v);
  }
  return std::bit_cast<float>(bits);
}

KUMI_HOST_DEVICE inline std::uint16_t floatToFp16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to Inf
  if (a < 0x38800000u) {  // result is subnormal or zero: scale so the integer part is the mantissa
    float scaled = std::bit_cast<float>(a) * 0x1p24f;  // exact: power-of-two scaling
    // Round to nearest even on the integer scaled value.
    std::uint32_t i = static_cast<std::uint32_t>(scaled);
    float frac = scaled - static_cast<float>(i);
    if (frac > 0.5f || (frac == 0.5f && (i & 1u))) ++i;
    return static_cast<std::uint16_t>(sign | i);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits, nearest even.
  std::uint32_t r = a - 0x38000000u;  // exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

}  // namespace kumi
