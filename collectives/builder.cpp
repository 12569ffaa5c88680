#include "collectives/builder.hpp"

#include <algorithm>

namespace kumi {

std::pair<int, std::uint64_t> ScheduleBuilder::placeOf(const Span& span) const {
  switch (span.buf) {
    case Buf::Send: return {0, span.offset + sendShift_};
    case Buf::Recv: return {inPlace_ ? 0 : 1, span.offset + recvShift_};
    case Buf::Scratch: return {2, span.offset};
  }
  return {3, span.offset};
}

ScheduleBuilder::Segments::iterator ScheduleBuilder::cover(int space, std::uint64_t begin, std::uint64_t end) {
  Segments& m = spaces_[static_cast<std::size_t>(space)];
  // Most accesses repeat an earlier one's exact range (generators move fixed slices).
  if (auto it = m.find(begin); it != m.end() && it->second.end == end) return it;
  // Splits the segment holding `at` (if one does and `at` is inside it) so that one begins there.
  auto splitAt = [&](std::uint64_t at) {
    auto it = m.upper_bound(at);
    if (it == m.begin()) return;
    --it;
    if (it->first == at || it->second.end <= at) return;
    Segment tail = it->second;
    it->second.end = at;
    m.emplace(at, std::move(tail));
  };
  splitAt(begin);
  splitAt(end);
  // Fill the gaps between existing segments so that [begin, end) is covered without holes.
  std::uint64_t at = begin;
  for (auto it = m.lower_bound(begin); at < end;) {
    if (it == m.end() || it->first > at) {
      const std::uint64_t gapEnd = it == m.end() ? end : std::min(end, it->first);
      it = std::next(m.emplace_hint(it, at, Segment{gapEnd, -1, {}}));
      at = gapEnd;
    } else {
      at = it->second.end;
      ++it;
    }
  }
  return m.lower_bound(begin);
}

std::uint32_t ScheduleBuilder::emitAfter(const Step& step, std::vector<std::uint32_t> extra) {
  std::vector<std::uint32_t> deps = std::move(extra);
  const bool readsSrc = step.kind == StepKind::Send || step.kind == StepKind::RecvReduce || step.kind == StepKind::Copy;
  const bool writesDst = step.kind != StepKind::Send;
  const bool reads = readsSrc && step.src.count > 0, writes = writesDst && step.dst.count > 0;
  const auto index = static_cast<std::uint32_t>(s_.steps.size());
  const auto src = placeOf(step.src), dst = placeOf(step.dst);
  // Both spans' segments, split to fit, before either is read: covering the second may split a
  // segment of the first, which its walk (bounded by the end offset) then sees in two parts.
  Segments::iterator srcAt, dstAt;
  if (reads) srcAt = cover(src.first, src.second, src.second + step.src.count);
  if (writes) dstAt = cover(dst.first, dst.second, dst.second + step.dst.count);
  auto each = [&](Segments::iterator it, std::pair<int, std::uint64_t> place, std::uint64_t count, auto&& fn) {
    Segments& m = spaces_[static_cast<std::size_t>(place.first)];
    for (; it != m.end() && it->first < place.second + count; ++it) fn(it->second);
  };
  if (reads)
    each(srcAt, src, step.src.count, [&](const Segment& g) {
      if (g.lastWriter >= 0) deps.push_back(static_cast<std::uint32_t>(g.lastWriter));
    });
  if (writes)
    each(dstAt, dst, step.dst.count, [&](const Segment& g) {
      if (g.lastWriter >= 0) deps.push_back(static_cast<std::uint32_t>(g.lastWriter));
      deps.insert(deps.end(), g.readers.begin(), g.readers.end());
    });
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  // Record accesses after computing deps: a step that reads and writes one span (in place)
  // must not depend on itself, and its write supersedes its read.
  if (reads) each(srcAt, src, step.src.count, [&](Segment& g) { g.readers.push_back(index); });
  if (writes)
    each(dstAt, dst, step.dst.count, [&](Segment& g) {
      g.lastWriter = index;
      g.readers.clear();
    });
  // (Divide reads what it writes: the write rules above order it.)
  return s_.add(step, deps);
}

std::uint32_t ScheduleBuilder::emit(const Step& step) { return emitAfter(step, {}); }

Block blockOf(std::uint64_t count, int parts, int index) {
  const auto p = static_cast<std::uint64_t>(parts), i = static_cast<std::uint64_t>(index);
  const std::uint64_t base = count / p, extra = count % p;
  return {i * base + std::min(i, extra), base + (i < extra ? 1 : 0)};
}

std::vector<Block> slicesOf(Block block, std::uint64_t slice) {
  std::vector<Block> out;
  if (slice == 0) slice = 1;
  for (std::uint64_t off = 0; off < block.count; off += slice)
    out.push_back({block.offset + off, std::min(slice, block.count - off)});
  return out;
}

}  // namespace kumi
