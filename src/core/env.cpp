#include "core/env.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "core/error.hpp"

namespace kumi {

std::optional<std::string> envString(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::optional<long long> envInt(const char* name) {
  auto s = envString(name);
  if (!s) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s->c_str(), &end, 10);
  if (errno != 0 || end == s->c_str() || *end != '\0')
    fail(kumiInvalidArgument, name, "='", *s, "' is not an integer");
  return v;
}

std::optional<int> envIntIn(const char* name, long long lo, long long hi) {
  auto v = envInt(name);
  if (!v) return std::nullopt;
  if (*v < lo || *v > hi) fail(kumiInvalidArgument, name, "=", *v, " is outside [", lo, ", ", hi, "]");
  return static_cast<int>(*v);
}

std::optional<double> envDouble(const char* name) {
  auto s = envString(name);
  if (!s) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s->c_str(), &end);
  if (errno != 0 || end == s->c_str() || *end != '\0' || v != v)
    fail(kumiInvalidArgument, name, "='", *s, "' is not a number");
  return v;
}

std::optional<std::uint64_t> parseBytes(const std::string& text) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;  // no sign, no blanks
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || text[0] == '-') return std::nullopt;
  std::uint64_t mult = 1;
  if (*end != '\0') {
    switch (*end) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      case 't': case 'T': mult = 1ull << 40; break;
      default: return std::nullopt;
    }
    ++end;
    if (*end == 'B' || *end == 'b') ++end;
    if (*end != '\0') return std::nullopt;
  }
  if (v != 0 && mult > UINT64_MAX / v) return std::nullopt;
  return v * mult;
}

std::optional<std::uint64_t> envBytes(const char* name) {
  auto s = envString(name);
  if (!s) return std::nullopt;
  auto v = parseBytes(*s);
  if (!v) fail(kumiInvalidArgument, name, "='", *s, "' is not a size (e.g. 512K, 4M)");
  return v;
}

}  // namespace kumi
