// A peer's shared-memory segment as this rank checks it before use: the layout check on the
// mapped bytes, then what the transport does with a segment that passed (read this rank's
// channel), and the bounds check of an inline slot fragment before its bytes are copied. The
// segment is an exactly-sized, cache-line-aligned copy of the input, so that AddressSanitizer
// sees any read the checks should have prevented. Input: peers, slot size and rank selectors,
// a fragment header, then the segment's bytes.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_input.hpp"
#include "transports/shm/layout_check.hpp"

namespace {
struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kumi::fuzz::Input in(data, size);
  const int peers = 1 + in.byte() % 4;
  constexpr std::size_t kSlotSizes[] = {64, 128, 4096};
  const std::size_t slotBytes = kSlotSizes[in.byte() % 3];
  const int myRank = in.byte() % 8;
  // The fragment check: offsets and lengths as a sender writes them, against a posted receive.
  const std::uint64_t offset = in.u16(), bytes = in.u16();
  const std::size_t opBytes = in.u16(), opOffset = in.u16();
  if (opOffset <= opBytes && kumi::shm::inlineFragmentFits(offset, bytes, slotBytes, opOffset, opBytes)) {
    std::vector<std::byte> slot(slotBytes), dst(opBytes);
    if (bytes) std::memcpy(dst.data() + opOffset, slot.data(), bytes);
  }
  const std::string segment = in.rest();
  if (segment.empty()) return 0;
  // Mapped segments are page-aligned; the layout has cache-line alignment.
  std::unique_ptr<std::byte, FreeDeleter> mapped(
      static_cast<std::byte*>(std::aligned_alloc(64, (segment.size() + 63) / 64 * 64)));
  std::memcpy(mapped.get(), segment.data(), segment.size());
  try {
    const std::size_t mine = kumi::shm::checkPeerLayout(mapped.get(), segment.size(), slotBytes, peers, myRank, 1, "fuzz");
    if (mine >= static_cast<std::size_t>(peers)) __builtin_trap();
    // The transport then uses the whole channel: its header and its slots.
    const std::size_t begin = kumi::shm::channelOffset(slotBytes, mine), end = kumi::shm::channelOffset(slotBytes, mine + 1);
    if (end > segment.size()) __builtin_trap();
    volatile std::uint8_t sink = 0;
    for (std::size_t i = begin; i < end; i += 64) sink = sink + static_cast<std::uint8_t>(mapped.get()[i]);
  } catch (const kumi::Error&) {
    // Refused: the pair falls back to TCP.
  }
  return 0;
}
