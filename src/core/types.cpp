#include "core/types.hpp"

#include <array>
#include <string>

namespace kumi {
namespace {
constexpr std::array<const char*, kumiNumTypes> kTypeNames = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64"};
constexpr std::array<const char*, kumiNumOps> kOpNames = {"sum", "prod", "min", "max", "avg"};
}  // namespace

const char* typeName(kumiDataType_t t) { return validType(t) ? kTypeNames[t] : "invalid"; }
const char* opName(kumiRedOp_t op) { return validOp(op) ? kOpNames[op] : "invalid"; }

std::optional<kumiDataType_t> parseType(std::string_view name) {
  for (int t = 0; t < kumiNumTypes; ++t)
    if (name == kTypeNames[t]) return static_cast<kumiDataType_t>(t);
  // Aliases used by nccl-tests and numpy.
  struct Alias { std::string_view name; kumiDataType_t type; };
  static constexpr Alias kAliases[] = {
      {"char", kumiInt8},   {"int", kumiInt32},     {"half", kumiFloat16}, {"fp16", kumiFloat16},
      {"bf16", kumiBfloat16}, {"float", kumiFloat32}, {"fp32", kumiFloat32}, {"double", kumiFloat64},
      {"fp64", kumiFloat64}, {"uint", kumiUint32}};
  for (const auto& a : kAliases)
    if (name == a.name) return a.type;
  return std::nullopt;
}

std::optional<kumiRedOp_t> parseOp(std::string_view name) {
  for (int op = 0; op < kumiNumOps; ++op)
    if (name == kOpNames[op]) return static_cast<kumiRedOp_t>(op);
  return std::nullopt;
}

}  // namespace kumi
