// Byte counts for people: "48 KiB", "1.5 GiB" (whole numbers stay whole). One definition for
// logs, errors and kumi-topo alike.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace kumi {

inline std::string formatBytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  std::uint64_t whole = bytes;
  while (whole >= 1024 && u < 5) {
    whole /= 1024;
    ++u;
  }
  double exact = static_cast<double>(bytes);
  for (int i = 0; i < u; ++i) exact /= 1024;
  char buf[32];
  if (exact == static_cast<double>(whole))
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(whole), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", exact, units[u]);
  return buf;
}

}  // namespace kumi
