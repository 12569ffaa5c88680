// Recursive doubling: log2(n) rounds of pairwise exchange of the whole buffer. Latency-optimal
// for small messages. A world that is not a power of two first folds its extra ranks into
// partners and hands them the result at the end (the standard Rabenseifner/Thakur handling).
#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"

namespace kumi {

Schedule recursiveDoublingAllReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "recursive_doubling";
  const int n = k.worldSize, r = k.rank;
  ScheduleBuilder b(s, k.inPlace);
  if (k.count == 0) return s;
  if (singleRank(b, n, k.count, k.inPlace)) return s;
  // Every exchange goes in pipeline slices, so staging memory stays bounded when a large
  // message is forced onto this algorithm.
  const auto slices = slicesOf({0, k.count}, k.sliceCount);
  const Fold f(n);
  const int vrank = f.virtualOf(r);
  if (vrank < 0) {  // folded away: hand the data over, wait for the result
    for (Block sl : slices) b.send(r + 1, at(Buf::Send, sl));
    for (Block sl : slices) b.recv(r + 1, at(Buf::Recv, sl));
    return s;
  }
  bool haveOwn = false;  // whether Recv already holds this rank's running result
  if (r < 2 * f.extra) {
    for (Block sl : slices) b.recvReduce(r - 1, at(Buf::Send, sl), at(Buf::Recv, sl));
    haveOwn = true;
  }
  for (int mask = 1; mask < f.pow2; mask <<= 1) {
    const int peer = f.realOf(vrank ^ mask);
    const Buf from = haveOwn ? Buf::Recv : Buf::Send;
    for (Block sl : slices) b.send(peer, at(from, sl));
    for (Block sl : slices) b.recvReduce(peer, at(from, sl), at(Buf::Recv, sl));
    haveOwn = true;
  }
  if (k.divide)
    for (Block sl : slices) b.divide(at(Buf::Recv, sl));
  if (r < 2 * f.extra)
    for (Block sl : slices) b.send(r - 1, at(Buf::Recv, sl));
  return s;
}

}  // namespace kumi
