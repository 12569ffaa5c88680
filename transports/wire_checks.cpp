#include <cstddef>

#include "transports/transport.hpp"

namespace kumi {

bool injectCorruption(const WireChecks& checks, std::uint32_t& counter, void* data, std::size_t bytes) {
  if (checks.corruptEvery == 0 || bytes == 0) return false;
  if (++counter % checks.corruptEvery != 0) return false;
  // A different bit each time, somewhere in the part, as line noise would pick.
  auto* p = static_cast<unsigned char*>(data);
  p[(counter * 2654435761u) % bytes] ^= static_cast<unsigned char>(1u << (counter % 8));
  return true;
}

}  // namespace kumi
