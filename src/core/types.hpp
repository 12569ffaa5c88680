// Data types and reduction operators: sizes and canonical names. Header-only, so that tools
// linking only the public library (kumi-bench) use the same names.
#pragma once

#include <kumi/kumi.h>

#include <array>
#include <cstddef>

namespace kumi {

inline constexpr std::size_t kTypeSizes[kumiNumTypes] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
inline constexpr std::array<const char*, kumiNumTypes> kTypeNames = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64"};
inline constexpr std::array<const char*, kumiNumOps> kOpNames = {"sum", "prod", "min", "max", "avg"};

inline bool validType(int t) { return t >= 0 && t < kumiNumTypes; }
inline bool validOp(int op) { return op >= 0 && op < kumiNumOps; }
inline std::size_t typeSize(kumiDataType_t t) { return validType(t) ? kTypeSizes[t] : 0; }
inline const char* typeName(kumiDataType_t t) { return validType(t) ? kTypeNames[t] : "invalid"; }  // "float32"
inline const char* opName(kumiRedOp_t op) { return validOp(op) ? kOpNames[op] : "invalid"; }        // "sum"

}  // namespace kumi
