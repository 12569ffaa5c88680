// FNV-1a: a small, stable 64-bit hash for identities on the wire and names on disk (not for
// security). One definition, so that both ends of a connection always agree.
#pragma once

#include <cstdint>
#include <string_view>

namespace kumi {

constexpr std::uint64_t kFnvOffset = 1469598103934665603ull;

constexpr std::uint64_t fnv1a(std::string_view s, std::uint64_t h = kFnvOffset) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

constexpr std::uint64_t fnv1aMix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 1099511628211ull; }

}  // namespace kumi
