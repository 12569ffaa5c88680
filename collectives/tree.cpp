// Tree algorithms: binomial broadcast and reduce (log2(n) depth, for small and medium messages),
// and the double binary tree allreduce NCCL describes: two binary trees over the ranks, each
// carrying half of the data up (reduce) and back down (broadcast), pipelined in slices. The
// second tree is the first over the ranks shifted by one, so most ranks that are leaves in one
// tree are inner nodes in the other and the load spreads evenly.
#include <algorithm>
#include <bit>

#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"

namespace kumi {
namespace {

// Binomial tree rooted at virtual rank 0: parent and children (nearest first) of virtual rank v.
struct Binomial {
  int parent = -1;
  std::vector<int> children;
};
Binomial binomial(int v, int n) {
  Binomial t;
  int mask = 1;
  while (mask < n) {
    if (v & mask) {
      t.parent = v - mask;
      break;
    }
    mask <<= 1;
  }
  // Children are v + m for the masks below v's lowest set bit (all masks for the root).
  // (For the root, mask ran past n, so that is every power of two below n.)
  for (int m = 1; m < mask && v + m < n; m <<= 1) t.children.push_back(v + m);
  return t;
}

// A binary tree over positions [0, n): in-order layout, so the root is the middle and the
// leaves are (about) every other position.
struct BinaryNode {
  int parent = -1;
  std::vector<int> children;
};
void buildInOrder(int lo, int hi, int parent, std::vector<BinaryNode>& nodes) {
  if (lo >= hi) return;
  const int mid = lo + (hi - lo) / 2;
  nodes[static_cast<std::size_t>(mid)].parent = parent;
  if (parent >= 0) nodes[static_cast<std::size_t>(parent)].children.push_back(mid);
  buildInOrder(lo, mid, mid, nodes);
  buildInOrder(mid + 1, hi, mid, nodes);
}

}  // namespace

Schedule binomialBroadcast(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "binomial";
  const int n = k.worldSize;
  ScheduleBuilder b(s, k.inPlace);
  const int v = (k.rank - k.root + n) % n;
  auto real = [&](int vr) { return (vr + k.root) % n; };
  const Binomial t = binomial(v, n);
  const auto slices = slicesOf({0, k.count}, k.sliceCount);
  if (v == 0 && !k.inPlace && k.count > 0) b.copy({Buf::Send, 0, k.count}, {Buf::Recv, 0, k.count});
  // Children far down the tree first: they have the most ranks below them.
  std::vector<int> kids(t.children.rbegin(), t.children.rend());
  for (Block sl : slices) {
    if (v != 0) b.recv(real(t.parent), at(Buf::Recv, sl));
    for (int c : kids) b.send(real(c), at(v == 0 ? Buf::Send : Buf::Recv, sl));
  }
  return s;
}

Schedule binomialReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "binomial";
  const int n = k.worldSize;
  ScheduleBuilder b(s, k.inPlace);
  const auto slices = slicesOf({0, k.count}, k.sliceCount);
  if (n == 1) {
    if (!k.inPlace && k.count > 0) b.copy({Buf::Send, 0, k.count}, {Buf::Recv, 0, k.count});
    return s;
  }
  const int v = (k.rank - k.root + n) % n;
  auto real = [&](int vr) { return (vr + k.root) % n; };
  const Binomial t = binomial(v, n);
  if (t.children.empty()) {  // a leaf: its input goes up as is
    for (Block sl : slices) b.send(real(t.parent), at(Buf::Send, sl));
    return s;
  }
  // Partial sums: in Recv at the root, else in a ring of scratch slots (recvbuf is root-only).
  constexpr std::uint64_t kSlots = 4;
  const std::uint64_t stride = std::min<std::uint64_t>(k.sliceCount, k.count);
  if (v != 0) s.scratchCount = kSlots * stride;
  std::uint64_t use = 0;
  for (Block sl : slices) {
    Span acc = v == 0 ? at(Buf::Recv, sl) : Span{Buf::Scratch, (use++ % kSlots) * stride, sl.count};
    bool first = true;
    for (int c : t.children) {
      b.recvReduce(real(c), first ? at(Buf::Send, sl) : acc, acc);
      first = false;
    }
    if (v == 0) {
      if (k.divide) b.divide(acc);
    } else {
      b.send(real(t.parent), acc);
    }
  }
  return s;
}

Schedule doubleBinaryTreeAllReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "tree";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  if (k.count == 0) return s;
  if (singleRank(b, n, k.count, k.inPlace)) return s;
  std::vector<BinaryNode> nodes(static_cast<std::size_t>(n));
  buildInOrder(0, n, -1, nodes);
  // Tree t places rank r at position (r + t) mod n; positions map back the other way.
  auto rankAt = [&](int tree, int pos) { return ((pos - tree) % n + n) % n; };
  const int trees = 2;
  std::vector<std::vector<Block>> slices(trees);
  for (int t = 0; t < trees; ++t) slices[static_cast<std::size_t>(t)] = slicesOf(blockOf(k.count, trees, t), k.sliceCount);
  const std::size_t most = std::max(slices[0].size(), slices[1].size());
  auto up = [&](int t, Block sl) {  // reduce the children's partial sums into ours, pass them on
    const BinaryNode& me = nodes[static_cast<std::size_t>((r + t) % n)];
    bool first = true;
    for (int c : me.children) {
      b.recvReduce(rankAt(t, c), at(first ? Buf::Send : Buf::Recv, sl), at(Buf::Recv, sl));
      first = false;
    }
    if (me.parent >= 0)
      b.send(rankAt(t, me.parent), at(first ? Buf::Send : Buf::Recv, sl));  // a leaf sends its input
    else if (k.divide)
      b.divide(at(Buf::Recv, sl));
  };
  auto down = [&](int t, Block sl) {  // the result comes from the parent and goes to the children
    const BinaryNode& me = nodes[static_cast<std::size_t>((r + t) % n)];
    if (me.parent >= 0) b.recv(rankAt(t, me.parent), at(Buf::Recv, sl));
    for (int c : me.children) b.send(rankAt(t, c), at(Buf::Recv, sl));
  };
  // Messages to one peer leave in the order they were emitted, and a rank is often the parent
  // of a peer in one tree and its child in the other. Had slice i gone up and down in one piece,
  // a leaf's input (ready at once) would wait on that connection behind the other tree's result
  // for slice i (ready only after a round trip to the root), and the trees would take turns on
  // the link instead of sharing it: 1.6x the ring's time on 2 x 2 nodes where the ring's bytes
  // cross the same link (docs/PERFORMANCE.md). So the ups run ahead of the downs by the trees'
  // height, about the number of slices that are in flight on the way to the root and back.
  // Every rank emits in the same (slice, phase, tree) order, so both ends of each connection
  // agree on it.
  const std::size_t lag = static_cast<std::size_t>(std::bit_width(static_cast<unsigned>(n)) - 1);
  for (std::size_t i = 0; i < most + lag; ++i) {
    for (int t = 0; t < trees; ++t)
      if (i < slices[static_cast<std::size_t>(t)].size()) up(t, slices[static_cast<std::size_t>(t)][i]);
    if (i < lag) continue;
    for (int t = 0; t < trees; ++t)
      if (i - lag < slices[static_cast<std::size_t>(t)].size()) down(t, slices[static_cast<std::size_t>(t)][i - lag]);
  }
  return s;
}

}  // namespace kumi
