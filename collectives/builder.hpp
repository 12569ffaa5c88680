// Helps algorithm generators emit steps: derives each step's dependencies from the memory it
// reads and writes (read-after-write, write-after-read, write-after-write), with the user's
// send and receive buffers aliased when the call is in place. Generators then only say what
// moves where; ordering that makes pipelining safe follows from the data.
#pragma once

#include <array>
#include <map>
#include <utility>
#include <vector>

#include "collectives/schedule.hpp"

namespace kumi {

class ScheduleBuilder {
 public:
  // With inPlace, Send offset o and Recv offset o + recvShift - sendShift name the same memory;
  // shifts translate each buffer into one coordinate system.
  ScheduleBuilder(Schedule& schedule, bool inPlace, std::uint64_t sendShift = 0, std::uint64_t recvShift = 0)
      : s_(schedule), inPlace_(inPlace), sendShift_(sendShift), recvShift_(recvShift) {}

  std::uint32_t send(int peer, Span src) { return emit({StepKind::Send, peer, src, {}}); }
  std::uint32_t recv(int peer, Span dst) { return emit({StepKind::Recv, peer, {}, dst}); }
  std::uint32_t recvReduce(int peer, Span src, Span dst) { return emit({StepKind::RecvReduce, peer, src, dst}); }
  std::uint32_t copy(Span src, Span dst) { return emit({StepKind::Copy, -1, src, dst}); }
  std::uint32_t divide(Span dst) { return emit({StepKind::Divide, -1, {}, dst}); }
  // A step with explicit extra dependencies (e.g. barrier rounds, which move no data).
  std::uint32_t emitAfter(const Step& step, std::vector<std::uint32_t> extra);

 private:
  // Hazards are tracked per element range: each buffer (Send and Recv are one when in place) is
  // a map of disjoint segments, split where an access begins or ends, each with its last writer
  // and the readers since. A generator may move a whole run of slices in one message and later
  // parts of it separately (Rabenseifner's halving steps do), and every overlap is still seen.
  struct Segment {
    std::uint64_t end;
    long long lastWriter = -1;
    std::vector<std::uint32_t> readers;  // since the last write
  };
  using Segments = std::map<std::uint64_t, Segment>;  // begin -> segment
  // The space and first element a span covers in it.
  std::pair<int, std::uint64_t> placeOf(const Span& span) const;
  // Splits and fills the segments of `space` so that some cover exactly [begin, end) (missing
  // parts are created untouched); returns the first. Walk them by offset up to `end`: covering
  // another range afterwards may insert segments, never remove one.
  Segments::iterator cover(int space, std::uint64_t begin, std::uint64_t end);
  std::uint32_t emit(const Step& step);
  Schedule& s_;
  bool inPlace_;
  std::uint64_t sendShift_, recvShift_;
  std::array<Segments, 4> spaces_;  // by placeOf().first
};

// A world of one rank: the result is the input, copied unless in place. Returns whether that
// was the case (and the schedule is complete).
inline bool singleRank(ScheduleBuilder& b, int worldSize, std::uint64_t count, bool inPlace) {
  if (worldSize != 1) return false;
  if (!inPlace) b.copy({Buf::Send, 0, count}, {Buf::Recv, 0, count});
  return true;
}

// Partition of `count` elements into `parts` nearly equal blocks (the first ones one larger).
struct Block {
  std::uint64_t offset, count;
};
Block blockOf(std::uint64_t count, int parts, int index);
// Splits [offset, offset+count) into pipeline slices of at most `slice` elements.
std::vector<Block> slicesOf(Block block, std::uint64_t slice);

// The span of buffer `buf` that a block covers.
inline Span at(Buf buf, Block b) { return {buf, b.offset, b.count}; }

// Recursive doubling and halving on a world that is not a power of two: the first 2*extra ranks
// pair up, the even one of each pair hands its data to the odd one (and gets the result back at
// the end), and the remaining pow2 ranks run the power-of-two algorithm as virtual ranks.
struct Fold {
  int pow2 = 1, extra = 0;
  explicit Fold(int n) {
    while (pow2 * 2 <= n) pow2 *= 2;
    extra = n - pow2;
  }
  // -1 for a rank folded away (the even rank of a leading pair).
  int virtualOf(int r) const { return r < 2 * extra ? (r % 2 ? r / 2 : -1) : r - extra; }
  int realOf(int v) const { return v < extra ? 2 * v + 1 : v + extra; }
  // Real ranks whose data virtual rank v stands for: [first, last].
  int firstOf(int v) const { return v < extra ? 2 * v : v + extra; }
  int lastOf(int v) const { return v < extra ? 2 * v + 1 : v + extra; }
};

}  // namespace kumi
