// Reading and writing one element of any kumi data type as a double. Header-only so that tools
// linking only the public library (kumi-bench) and the tests share it. Not for hot paths.
#pragma once

#include <kumi/kumi.h>

#include <cstdint>

#include "core/half.hpp"

namespace kumi {

inline void storeElement(kumiDataType_t t, void* base, std::uint64_t i, double v) {
  switch (t) {
    case kumiInt8: static_cast<std::int8_t*>(base)[i] = static_cast<std::int8_t>(v); break;
    case kumiUint8: static_cast<std::uint8_t*>(base)[i] = static_cast<std::uint8_t>(v); break;
    case kumiInt32: static_cast<std::int32_t*>(base)[i] = static_cast<std::int32_t>(v); break;
    case kumiUint32: static_cast<std::uint32_t*>(base)[i] = static_cast<std::uint32_t>(v); break;
    case kumiInt64: static_cast<std::int64_t*>(base)[i] = static_cast<std::int64_t>(v); break;
    case kumiUint64: static_cast<std::uint64_t*>(base)[i] = static_cast<std::uint64_t>(v); break;
    case kumiFloat16: static_cast<std::uint16_t*>(base)[i] = floatToFp16(static_cast<float>(v)); break;
    case kumiBfloat16: static_cast<std::uint16_t*>(base)[i] = floatToBf16(static_cast<float>(v)); break;
    case kumiFloat32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case kumiFloat64: static_cast<double*>(base)[i] = v; break;
    default: break;
  }
}

inline double loadElement(kumiDataType_t t, const void* base, std::uint64_t i) {
  switch (t) {
    case kumiInt8: return static_cast<const std::int8_t*>(base)[i];
    case kumiUint8: return static_cast<const std::uint8_t*>(base)[i];
    case kumiInt32: return static_cast<const std::int32_t*>(base)[i];
    case kumiUint32: return static_cast<const std::uint32_t*>(base)[i];
    case kumiInt64: return static_cast<double>(static_cast<const std::int64_t*>(base)[i]);
    case kumiUint64: return static_cast<double>(static_cast<const std::uint64_t*>(base)[i]);
    case kumiFloat16: return fp16ToFloat(static_cast<const std::uint16_t*>(base)[i]);
    case kumiBfloat16: return bf16ToFloat(static_cast<const std::uint16_t*>(base)[i]);
    case kumiFloat32: return static_cast<const float*>(base)[i];
    case kumiFloat64: return static_cast<const double*>(base)[i];
    default: return 0;
  }
}

// `v` as the type would hold it (rounding or truncating once).
inline double roundToType(kumiDataType_t t, double v) {
  std::uint64_t slot = 0;
  storeElement(t, &slot, 0, v);
  return loadElement(t, &slot, 0);
}

}  // namespace kumi
