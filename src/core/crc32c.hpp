// CRC32C (Castagnoli), the checksum of KUMI_CHECKSUM: the SSE4.2 instruction where the CPU has
// it (several GB/s, so checking a link costs a fraction of moving the data), a table otherwise.
// Both give the same value, so ranks on different CPUs agree.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kumi {

std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc = 0);

}  // namespace kumi
