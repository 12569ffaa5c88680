// Splitting configuration lists ("a,b;c:d") the same way everywhere.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kumi {

inline std::string trim(const std::string& s) {
  auto a = s.find_first_not_of(" \t");
  auto b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// "a, b,,c" -> {"a", "b", "", "c"} (items trimmed; empty items kept for the caller to judge).
inline std::vector<std::string> splitList(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    out.push_back(trim(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start)));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

// printf into a string, for report lines with widths and precisions (at most 511 characters);
// C varargs so that the compiler checks every format against its arguments.
[[gnu::format(printf, 1, 2)]] inline std::string formatted(const char* format, ...) {
  char b[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(b, sizeof b, format, args);
  va_end(args);
  return b;
}

// 8 hex digits (checksums, 32-bit hashes in names).
inline std::string hex32(std::uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

}  // namespace kumi
