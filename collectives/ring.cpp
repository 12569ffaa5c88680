// Ring algorithms (allreduce = reduce-scatter + allgather, each around the ring), pipelined in
// slices so that a slice can travel on while the next is still arriving. Bandwidth-optimal:
// each rank sends 2(n-1)/n of the data for allreduce.
#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"

namespace kumi {
namespace {

Span shifted(Buf buf, Block b, std::uint64_t by) { return {buf, b.offset + by, b.count}; }

}  // namespace

Schedule ringAllReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "ring";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  if (n == 1) {
    if (!k.inPlace && k.count > 0) b.copy({Buf::Send, 0, k.count}, {Buf::Recv, 0, k.count});
    return s;
  }
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  auto chunk = [&](int c) { return blockOf(k.count, n, ((c % n) + n) % n); };
  // Reduce-scatter: after n-1 steps this rank holds the full reduction of chunk r+1.
  for (int step = 0; step < n - 1; ++step) {
    for (Block sl : slicesOf(chunk(r - step), k.sliceCount))
      b.send(next, at(step == 0 ? Buf::Send : Buf::Recv, sl));
    for (Block sl : slicesOf(chunk(r - step - 1), k.sliceCount))
      b.recvReduce(prev, at(Buf::Send, sl), at(Buf::Recv, sl));
  }
  if (k.divide)
    for (Block sl : slicesOf(chunk(r + 1), k.sliceCount)) b.divide(at(Buf::Recv, sl));
  // Allgather: pass the finished chunks around.
  for (int step = 0; step < n - 1; ++step) {
    for (Block sl : slicesOf(chunk(r + 1 - step), k.sliceCount)) b.send(next, at(Buf::Recv, sl));
    for (Block sl : slicesOf(chunk(r - step), k.sliceCount)) b.recv(prev, at(Buf::Recv, sl));
  }
  return s;
}

Schedule ringReduceScatter(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "ring";
  const int n = k.worldSize, r = k.rank;
  const std::uint64_t rc = k.count;
  // In place, Recv is block r of Send.
  ScheduleBuilder b(s, k.inPlace, 0, static_cast<std::uint64_t>(r) * rc);
  const Block whole{0, rc};
  if (n == 1) {
    if (!k.inPlace && rc > 0) b.copy({Buf::Send, 0, rc}, {Buf::Recv, 0, rc});
    return s;
  }
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  auto inputOf = [&](int c) { return static_cast<std::uint64_t>(((c % n) + n) % n) * rc; };
  const auto slices = slicesOf(whole, k.sliceCount);
  // Partial sums travel through an accumulator. Out of place it is the output itself. In place
  // the output aliases this rank's own input block, still needed at the last step, so partials
  // use scratch: slices go in groups of 4, each step's partials in one half of 8 slots, so
  // scratch stays a few slices whatever the size. The grouping is the same either way: the order
  // of messages on the wire must not depend on a choice each rank makes alone.
  const std::size_t group = 4;
  const std::uint64_t stride = std::min<std::uint64_t>(k.sliceCount, rc);  // one slot
  if (k.inPlace) s.scratchCount = 2 * group * stride;
  std::vector<Span> previous(slices.size());
  for (std::size_t g0 = 0; g0 < slices.size(); g0 += group) {
    const std::size_t g1 = std::min(slices.size(), g0 + group);
    for (int step = 0; step < n - 1; ++step) {
      const bool last = step == n - 2;
      for (std::size_t i = g0; i < g1; ++i)
        b.send(next, step == 0 ? shifted(Buf::Send, slices[i], inputOf(r - 1)) : previous[i]);
      for (std::size_t i = g0; i < g1; ++i) {
        Span acc = at(Buf::Recv, slices[i]);
        if (!last && k.inPlace)
          acc = {Buf::Scratch, ((step % 2) * group + (i - g0)) * stride, slices[i].count};
        b.recvReduce(prev, shifted(Buf::Send, slices[i], inputOf(r - step - 2)), acc);
        previous[i] = acc;
      }
    }
  }
  if (k.divide)
    for (Block sl : slices) b.divide(at(Buf::Recv, sl));
  return s;
}

Schedule ringAllGather(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "ring";
  const int n = k.worldSize, r = k.rank;
  const std::uint64_t sc = k.count;
  // In place, Send is block r of Recv.
  ScheduleBuilder b(s, k.inPlace, static_cast<std::uint64_t>(r) * sc, 0);
  const Block whole{0, sc};
  if (!k.inPlace && sc > 0) b.copy({Buf::Send, 0, sc}, {Buf::Recv, static_cast<std::uint64_t>(r) * sc, sc});
  if (n == 1) return s;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  auto blockStart = [&](int c) { return static_cast<std::uint64_t>(((c % n) + n) % n) * sc; };
  const auto slices = slicesOf(whole, k.sliceCount);
  for (int step = 0; step < n - 1; ++step) {
    for (Block sl : slices)
      b.send(next, step == 0 ? at(Buf::Send, sl) : shifted(Buf::Recv, sl, blockStart(r - step)));
    for (Block sl : slices) b.recv(prev, shifted(Buf::Recv, sl, blockStart(r - step - 1)));
  }
  return s;
}

Schedule chainBroadcast(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "chain";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  const int pos = (r - k.root + n) % n;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  const auto slices = slicesOf({0, k.count}, k.sliceCount);
  if (pos == 0) {
    if (!k.inPlace && k.count > 0) b.copy({Buf::Send, 0, k.count}, {Buf::Recv, 0, k.count});
    if (n > 1)
      for (Block sl : slices) b.send(next, at(Buf::Send, sl));
    return s;
  }
  for (Block sl : slices) {
    b.recv(prev, at(Buf::Recv, sl));
    if (pos < n - 1) b.send(next, at(Buf::Recv, sl));
  }
  return s;
}

Schedule chainReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "chain";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  const auto slices = slicesOf({0, k.count}, k.sliceCount);
  if (n == 1) {  // (an average over one rank is the value itself)
    if (!k.inPlace && k.count > 0) b.copy({Buf::Send, 0, k.count}, {Buf::Recv, 0, k.count});
    return s;
  }
  // The chain starts after the root and ends at it.
  const int pos = (r - k.root - 1 + 2 * n) % n;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  constexpr std::uint64_t kSlots = 4;
  if (pos == 0) {
    for (Block sl : slices) b.send(next, at(Buf::Send, sl));
    return s;
  }
  if (pos == n - 1) {
    for (Block sl : slices) {
      b.recvReduce(prev, at(Buf::Send, sl), at(Buf::Recv, sl));
      if (k.divide) b.divide(at(Buf::Recv, sl));
    }
    return s;
  }
  // Middle of the chain: partials live in scratch slots, since recvbuf is root-only.
  const std::uint64_t stride = std::min<std::uint64_t>(k.sliceCount, k.count);  // one slot
  s.scratchCount = kSlots * stride;
  std::uint64_t use = 0;
  for (Block sl : slices) {
    Span acc{Buf::Scratch, (use++ % kSlots) * stride, sl.count};
    b.recvReduce(prev, at(Buf::Send, sl), acc);
    b.send(next, acc);
  }
  return s;
}

Schedule disseminationBarrier(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "dissemination";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, false);
  long long lastRecv = -1;
  for (int dist = 1; dist < n; dist *= 2) {
    std::vector<std::uint32_t> after;
    if (lastRecv >= 0) after.push_back(static_cast<std::uint32_t>(lastRecv));
    b.emitAfter({StepKind::Send, (r + dist) % n, {}, {}}, after);
    lastRecv = b.emitAfter({StepKind::Recv, (r - dist % n + n) % n, {}, {}}, {});
  }
  return s;
}

Schedule directSendRecv(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "direct";
  ScheduleBuilder b(s, false);
  if (k.coll == Collective::Send)
    b.emitAfter({StepKind::Send, k.root, {Buf::Send, 0, k.count}, {}}, {});
  else
    b.emitAfter({StepKind::Recv, k.root, {}, {Buf::Recv, 0, k.count}}, {});
  return s;
}

}  // namespace kumi
