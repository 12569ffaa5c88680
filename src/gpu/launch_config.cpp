#include "gpu/launch_config.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace kumi::gpu {

ReduceLaunch reduceLaunch(std::size_t count, std::size_t elemSize, std::uintptr_t dst, std::uintptr_t a,
                          std::uintptr_t b, int multiprocessors) {
  KUMI_REQUIRE_ARG(elemSize == 1 || elemSize == 2 || elemSize == 4 || elemSize == 8,
                   "element size must be 1, 2, 4 or 8 bytes, got ", elemSize);
  KUMI_REQUIRE_ARG(multiprocessors > 0, "a device has at least one multiprocessor, got ", multiprocessors);
  ReduceLaunch l;
  l.threadsPerBlock = kReduceThreadsPerBlock;
  if (count == 0) return l;
  // 16-byte vectors only when every pointer is 16-byte aligned: the three streams then move in
  // the widest loads the memory system has. A misaligned buffer (an offset into a tensor) takes
  // the scalar kernel rather than a slower mixed path.
  const bool aligned = ((dst | a | b) & 15u) == 0;
  l.vectorElements = aligned ? static_cast<int>(16 / elemSize) : 1;
  const std::size_t items = (count + static_cast<std::size_t>(l.vectorElements) - 1) / static_cast<std::size_t>(l.vectorElements);
  const std::size_t wanted = (items + kReduceThreadsPerBlock - 1) / kReduceThreadsPerBlock;
  const std::size_t full = static_cast<std::size_t>(multiprocessors) * kReduceBlocksPerMultiprocessor;
  l.blocks = static_cast<std::uint32_t>(std::max<std::size_t>(1, std::min(wanted, full)));
  return l;
}

}  // namespace kumi::gpu
