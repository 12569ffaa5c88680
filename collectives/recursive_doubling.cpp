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
  const Span send{Buf::Send, 0, k.count}, recv{Buf::Recv, 0, k.count};
  if (k.count == 0) return s;
  if (n == 1) {
    if (!k.inPlace) b.copy(send, recv);
    return s;
  }
  int pow2 = 1;
  while (pow2 * 2 <= n) pow2 *= 2;
  const int extra = n - pow2;
  // Ranks below 2*extra pair up: the even one hands its data to the odd one and waits.
  if (r < 2 * extra && r % 2 == 0) {
    b.send(r + 1, send);
    b.recv(r + 1, recv);
    return s;
  }
  bool haveOwn = false;  // whether Recv already holds this rank's running result
  if (r < 2 * extra) {
    b.recvReduce(r - 1, send, recv);
    haveOwn = true;
  }
  const int vrank = r < 2 * extra ? r / 2 : r - extra;
  auto realRank = [&](int v) { return v < extra ? 2 * v + 1 : v + extra; };
  for (int mask = 1; mask < pow2; mask <<= 1) {
    const int peer = realRank(vrank ^ mask);
    b.send(peer, haveOwn ? recv : send);
    b.recvReduce(peer, haveOwn ? recv : send, recv);
    haveOwn = true;
  }
  if (k.divide) b.divide(recv);
  if (r < 2 * extra) b.send(r - 1, recv);
  return s;
}

}  // namespace kumi
