#include "collectives/builder.hpp"

#include <algorithm>

namespace kumi {

ScheduleBuilder::Key ScheduleBuilder::keyOf(const Span& span) const {
  switch (span.buf) {
    case Buf::Send: return {0, span.offset + sendShift_};
    case Buf::Recv: return {inPlace_ ? 0 : 1, span.offset + recvShift_};
    case Buf::Scratch: return {2, span.offset};
  }
  return {3, 0};
}

std::uint32_t ScheduleBuilder::emitAfter(const Step& step, std::vector<std::uint32_t> extra) {
  std::vector<std::uint32_t> deps = std::move(extra);
  const bool readsSrc = step.kind == StepKind::Send || step.kind == StepKind::RecvReduce || step.kind == StepKind::Copy;
  const bool writesDst = step.kind != StepKind::Send;
  const auto index = static_cast<std::uint32_t>(s_.steps.size());
  if (readsSrc && step.src.count > 0) {
    Access& a = access_[keyOf(step.src)];
    if (a.lastWriter >= 0) deps.push_back(static_cast<std::uint32_t>(a.lastWriter));
  }
  if (writesDst && step.dst.count > 0) {
    Access& a = access_[keyOf(step.dst)];
    if (a.lastWriter >= 0) deps.push_back(static_cast<std::uint32_t>(a.lastWriter));
    deps.insert(deps.end(), a.readers.begin(), a.readers.end());
  }
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  // Record accesses after computing deps: a step that reads and writes one span (in place)
  // must not depend on itself.
  if (readsSrc && step.src.count > 0) {
    Access& a = access_[keyOf(step.src)];
    bool sameAsDst = writesDst && keyOf(step.src) == keyOf(step.dst);
    if (!sameAsDst) a.readers.push_back(index);
  }
  if (writesDst && step.dst.count > 0) {
    Access& a = access_[keyOf(step.dst)];
    a.lastWriter = index;
    a.readers.clear();
  }
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
