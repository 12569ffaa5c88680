// Recursive halving and doubling. Rabenseifner's allreduce: a reduce-scatter by recursive
// halving (each step exchanges half of what is left with a partner at distance n/2, n/4, ...)
// and an allgather by recursive doubling, so it moves as little as a ring but in 2 log2(n)
// steps. The reduce-scatter half on its own, and recursive-doubling allgather, likewise. A world
// that is not a power of two first folds its extra ranks into partners (the even rank of each of
// the first pairs hands its data to the odd one) and unfolds at the end: the standard
// Thakur-Rabenseifner-Gropp handling.
#include <algorithm>

#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"

namespace kumi {

Schedule rabenseifnerAllReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "rabenseifner";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  if (k.count == 0) return s;
  if (singleRank(b, n, k.count, k.inPlace)) return s;
  const Fold f(n);
  // pow2 blocks; every step moves a run of consecutive blocks as pipeline slices of the run: one message per slice, not one per block (at 1024 ranks a 64 KiB
  // call would otherwise send 2046 messages of 64 bytes or less per rank, and each costs a
  // round of the transport's per-message work).
  auto each = [&](int lo, int hi, auto&& fn) {
    const std::uint64_t begin = blockOf(k.count, f.pow2, lo).offset;
    const Block last = blockOf(k.count, f.pow2, hi - 1);
    for (Block sl : slicesOf({begin, last.offset + last.count - begin}, k.sliceCount)) fn(sl);
  };
  const int v = f.virtualOf(r);
  if (v < 0) {  // folded away: hand everything over, get the result back
    each(0, f.pow2, [&](Block sl) { b.send(r + 1, at(Buf::Send, sl)); });
    each(0, f.pow2, [&](Block sl) { b.recv(r + 1, at(Buf::Recv, sl)); });
    return s;
  }
  bool inRecv = false;  // whether Recv already holds this rank's running sums
  if (r < 2 * f.extra) {
    each(0, f.pow2, [&](Block sl) { b.recvReduce(r - 1, at(Buf::Send, sl), at(Buf::Recv, sl)); });
    inRecv = true;
  }
  // Reduce-scatter by recursive halving; remember each step's halves for the way back.
  struct Step {
    int partner, keepLo, keepHi, giveLo, giveHi;
  };
  std::vector<Step> steps;
  int lo = 0, hi = f.pow2;
  for (int d = f.pow2 / 2; d >= 1; d /= 2) {
    const int mid = lo + (hi - lo) / 2;
    Step st{f.realOf(v ^ d), lo, mid, mid, hi};
    if (v & d) st = {f.realOf(v ^ d), mid, hi, lo, mid};
    const Buf from = inRecv ? Buf::Recv : Buf::Send;
    each(st.giveLo, st.giveHi, [&](Block sl) { b.send(st.partner, at(from, sl)); });
    each(st.keepLo, st.keepHi, [&](Block sl) { b.recvReduce(st.partner, at(from, sl), at(Buf::Recv, sl)); });
    inRecv = true;
    steps.push_back(st);
    lo = st.keepLo;
    hi = st.keepHi;
  }
  if (k.divide) each(lo, hi, [&](Block sl) { b.divide(at(Buf::Recv, sl)); });
  // Allgather by recursive doubling: the same partners in reverse.
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    each(it->keepLo, it->keepHi, [&](Block sl) { b.send(it->partner, at(Buf::Recv, sl)); });
    each(it->giveLo, it->giveHi, [&](Block sl) { b.recv(it->partner, at(Buf::Recv, sl)); });
  }
  if (r < 2 * f.extra) each(0, f.pow2, [&](Block sl) { b.send(r - 1, at(Buf::Recv, sl)); });
  return s;
}

Schedule rabenseifnerReduceScatter(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "rabenseifner";
  const int n = k.worldSize, r = k.rank;
  const std::uint64_t rc = k.count;
  // In place, Recv is block r of Send.
  ScheduleBuilder b(s, k.inPlace, 0, static_cast<std::uint64_t>(r) * rc);
  if (rc == 0) return s;
  if (singleRank(b, n, rc, k.inPlace)) return s;
  const Fold f(n);
  const int half = f.pow2 / 2;
  const auto slices = slicesOf({0, rc}, k.sliceCount);
  auto input = [&](int j, Block sl) { return Span{Buf::Send, static_cast<std::uint64_t>(j) * rc + sl.offset, sl.count}; };
  // Virtual ranks [g, g + size) stand for the blocks of real ranks firstOf(g) .. lastOf(g + size - 1).
  auto blocks = [&](int g, int size, auto&& fn) {
    for (int j = f.firstOf(g); j <= f.lastOf(g + size - 1); ++j)
      for (Block sl : slices) fn(j, sl);
  };
  const int v = f.virtualOf(r);
  if (v < 0) {  // folded away: hand all input over, the half the partner keeps first (see below)
    const int theirs = f.virtualOf(r + 1) & half;
    blocks(theirs, half, [&](int j, Block sl) { b.send(r + 1, input(j, sl)); });
    blocks(theirs ^ half, half, [&](int j, Block sl) { b.send(r + 1, input(j, sl)); });
    for (Block sl : slices) b.recv(r + 1, at(Buf::Recv, sl));
    return s;
  }
  // Partial sums of the half kept at the first step: the own block's in Recv (in place that is
  // its input block, which only its own first reduction reads, so Send is otherwise never
  // written), the others' in Scratch. So scratch grows with the message: at most half the input
  // in a power-of-two world, two thirds otherwise (a folded pair's blocks count double), where
  // MPICH's recursive halving allocates two input-sized buffers.
  const int kept = v & half;
  const int first = f.firstOf(kept);
  auto acc = [&](int j, Block sl) {
    if (j == r) return at(Buf::Recv, sl);
    const auto slot = static_cast<std::uint64_t>(j - first - (j > r ? 1 : 0));
    return Span{Buf::Scratch, slot * rc + sl.offset, sl.count};
  };
  s.scratchCount = static_cast<std::uint64_t>(f.lastOf(kept + half - 1) - first) * rc;
  const bool absorbs = r < 2 * f.extra;
  if (absorbs) {
    blocks(kept, half, [&](int j, Block sl) { b.recvReduce(r - 1, input(j, sl), acc(j, sl)); });
    // The other half only passes through to the first partner: a few slots after the partial
    // sums carry it. Their reuse waits on sends, but nothing the partner needs before receiving
    // them does (its own kept half arrives first), so this cannot deadlock.
    constexpr std::uint64_t kSlots = 4;
    const std::uint64_t stride = std::min(std::max<std::uint64_t>(k.sliceCount, 1), rc), base = s.scratchCount;
    s.scratchCount += kSlots * stride;
    std::uint64_t use = 0;
    blocks(kept ^ half, half, [&](int j, Block sl) {
      const Span slot{Buf::Scratch, base + (use++ % kSlots) * stride, sl.count};
      b.recvReduce(r - 1, input(j, sl), slot);
      b.send(f.realOf(v ^ half), slot);
    });
  }
  // A halving step moves runs of consecutive blocks, each as slices of the run (one message per
  // block would make 1024 ranks send thousands of tiny ones). Blocks lie next to each other in
  // Send and, all but the rank's own (in Recv), in Scratch: a run is cut before and after the
  // receiver's own block, on both ends alike. (The passed-through half of an absorbing rank goes
  // block by block through its slots, and is received so.)
  auto runs = [&](int g, int size, int alone, auto&& fn) {
    const int lo = f.firstOf(g), hi = f.lastOf(g + size - 1);
    auto sliced = [&](int ja, int jb) {
      for (Block sl : slicesOf({0, static_cast<std::uint64_t>(jb - ja + 1) * rc}, k.sliceCount)) fn(ja, sl);
    };
    if (alone < lo || alone > hi) return sliced(lo, hi);
    if (lo < alone) sliced(lo, alone - 1);
    sliced(alone, alone);
    if (alone < hi) sliced(alone + 1, hi);
  };
  for (int d = half; d >= 1; d /= 2) {
    const int keep = v & ~(d - 1), give = (v ^ d) & ~(d - 1);
    const int partner = f.realOf(v ^ d);
    const bool summed = absorbs || d < half;  // else the partial sums are still the input
    auto from = [&](int j, Block sl) { return summed ? acc(j, sl) : input(j, sl); };
    if (!(absorbs && d == half)) runs(give, d, partner, [&](int j, Block sl) { b.send(partner, from(j, sl)); });
    auto reduceIn = [&](int j, Block sl) { b.recvReduce(partner, from(j, sl), acc(j, sl)); };
    if (d == half && partner < 2 * f.extra) blocks(keep, d, reduceIn);
    else runs(keep, d, r, reduceIn);
  }
  if (k.divide) blocks(v, 1, [&](int j, Block sl) { b.divide(acc(j, sl)); });
  if (absorbs)
    for (Block sl : slices) b.send(r - 1, acc(r - 1, sl));
  return s;
}

Schedule recursiveDoublingAllGather(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "recursive_doubling";
  const int n = k.worldSize, r = k.rank;
  const std::uint64_t sc = k.count;
  ScheduleBuilder b(s, k.inPlace, static_cast<std::uint64_t>(r) * sc, 0);
  const auto slices = slicesOf({0, sc}, k.sliceCount);
  auto block = [&](int owner, Block sl) { return Span{Buf::Recv, static_cast<std::uint64_t>(owner) * sc + sl.offset, sl.count}; };
  // This rank's own block travels from Send (no need to wait for its copy into Recv).
  auto source = [&](int owner, Block sl) { return owner == r ? Span{Buf::Send, sl.offset, sl.count} : block(owner, sl); };
  if (!k.inPlace && sc > 0)
    for (Block sl : slices) b.copy({Buf::Send, sl.offset, sl.count}, block(r, sl));
  if (n == 1 || sc == 0) return s;
  const Fold f(n);
  auto blocks = [&](int first, int last, auto&& fn) {
    for (int owner = first; owner <= last; ++owner)
      for (Block sl : slices) fn(owner, sl);
  };
  const int v = f.virtualOf(r);
  if (v < 0) {  // folded away: hand over the own block, get all the others back
    for (Block sl : slices) b.send(r + 1, source(r, sl));
    blocks(0, n - 1, [&](int owner, Block sl) {
      if (owner != r) b.recv(r + 1, block(owner, sl));
    });
    return s;
  }
  if (r < 2 * f.extra)
    for (Block sl : slices) b.recv(r - 1, block(r - 1, sl));
  // Virtual ranks [g, g + size) hold the blocks of real ranks firstOf(g) .. lastOf(g + size - 1).
  for (int d = 1; d < f.pow2; d *= 2) {
    const int mine = v & ~(d - 1), theirs = (v ^ d) & ~(d - 1);
    const int partner = f.realOf(v ^ d);
    blocks(f.firstOf(mine), f.lastOf(mine + d - 1), [&](int owner, Block sl) { b.send(partner, source(owner, sl)); });
    blocks(f.firstOf(theirs), f.lastOf(theirs + d - 1), [&](int owner, Block sl) { b.recv(partner, block(owner, sl)); });
  }
  if (r < 2 * f.extra)
    blocks(0, n - 1, [&](int owner, Block sl) {
      if (owner != r - 1) b.send(r - 1, source(owner, sl));
    });
  return s;
}

}  // namespace kumi
