// Pairwise all-to-all: at step k (1..n-1) rank r sends its block (r+k)%n to rank (r+k)%n and
// receives rank (r-k)%n's block r into block (r-k)%n, so that every rank talks to one peer in
// each direction per step and no receiver is flooded by all senders at once (incast). Each
// rank sends (n-1)/n of its input, the least any all-to-all can.
#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"
#include "core/error.hpp"

namespace kumi {
namespace {

// How many steps a rank's sends may run ahead of its receives: the sends of step k wait for the
// receives of step k - kWindow. One step of overlap hides a step's latency behind the
// next one's transfer, while the number of peers sending to a rank at once stays small. The
// dependency always points to an earlier step, and receives wait for nothing, so no rank can
// wait on a peer that waits on it: no deadlock over any transport.
constexpr int kWindow = 2;

Span blockSlice(Buf buf, Block slice, std::uint64_t blockStart) {
  return {buf, blockStart + slice.offset, slice.count};
}

}  // namespace

Schedule pairwiseAllToAll(const ScheduleKey& k) {
  // validate() refuses an in-place call: receiving into block j before block j has gone to
  // rank j would need the whole input kept aside.
  if (k.inPlace) fail(kumiInternalError, "the pairwise all-to-all has no in-place form");
  Schedule s;
  s.algorithm = "pairwise";
  const int n = k.worldSize, r = k.rank;
  const std::uint64_t bc = k.count;  // elements per block
  ScheduleBuilder b(s, false);
  if (bc == 0) return s;
  auto start = [&](int j) { return static_cast<std::uint64_t>(j) * bc; };
  b.copy({Buf::Send, start(r), bc}, {Buf::Recv, start(r), bc});  // own block; a world of one ends here
  const auto slices = slicesOf({0, bc}, k.sliceCount);
  // recvOf[step][slice]: the receive steps, for the sends kWindow steps later.
  std::vector<std::vector<std::uint32_t>> recvOf(static_cast<std::size_t>(n));
  for (int step = 1; step < n; ++step) {
    const int to = (r + step) % n, from = (r - step + n) % n;
    for (std::size_t i = 0; i < slices.size(); ++i) {
      std::vector<std::uint32_t> after;
      if (step > kWindow) after.push_back(recvOf[static_cast<std::size_t>(step - kWindow)][i]);
      b.emitAfter({StepKind::Send, to, blockSlice(Buf::Send, slices[i], start(to)), {}}, std::move(after));
    }
    auto& recvs = recvOf[static_cast<std::size_t>(step)];
    for (Block sl : slices) recvs.push_back(b.recv(from, blockSlice(Buf::Recv, sl, start(from))));
  }
  return s;
}

}  // namespace kumi
