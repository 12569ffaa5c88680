// Data types and reduction operators: sizes, names, parsing.
#pragma once

#include <kumi/kumi.h>

#include <cstddef>
#include <optional>
#include <string_view>

namespace kumi {

inline constexpr std::size_t kTypeSizes[kumiNumTypes] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};

inline bool validType(int t) { return t >= 0 && t < kumiNumTypes; }
inline bool validOp(int op) { return op >= 0 && op < kumiNumOps; }
inline std::size_t typeSize(kumiDataType_t t) { return validType(t) ? kTypeSizes[t] : 0; }
inline bool isFloatType(kumiDataType_t t) {
  return t == kumiFloat16 || t == kumiBfloat16 || t == kumiFloat32 || t == kumiFloat64;
}

const char* typeName(kumiDataType_t t);  // "float32"; "invalid" for bad values
const char* opName(kumiRedOp_t op);      // "sum"
std::optional<kumiDataType_t> parseType(std::string_view name);  // accepts nccl-tests names too
std::optional<kumiRedOp_t> parseOp(std::string_view name);

}  // namespace kumi
