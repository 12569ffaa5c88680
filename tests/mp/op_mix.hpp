// A reproducible mix of collectives for the fault-injection and soak drivers. Ranks that share a
// seed draw the same sequence of kinds, sizes and roots, so they call the same collectives in the
// same order without talking; every input element is a closed-form function of (rank, op index,
// element index), so every output element has a closed-form expected value, checked in full.
// Public C API only: the drivers test what applications see.
#pragma once

#include <kumi/kumi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace kumi::mix {

enum class Kind { AllReduce, AllGather, Broadcast, ReduceScatter, Barrier };
inline constexpr int kKinds = 5;

inline const char* kindName(Kind k) {
  switch (k) {
    case Kind::AllReduce: return "allreduce";
    case Kind::AllGather: return "allgather";
    case Kind::Broadcast: return "broadcast";
    case Kind::ReduceScatter: return "reduce_scatter";
    default: return "barrier";
  }
}

struct Op {
  Kind kind = Kind::Barrier;
  std::size_t count = 0;  // elements: per rank for allgather and reduce_scatter, of the whole otherwise
  int root = 0;           // broadcast
  bool inPlace = false;   // allreduce and allgather
};

// splitmix64: tiny, and the same on every rank and compiler.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t state_;
};

// Elements are uint32 (integer sums wrap, so the expectation is exact in any order of reduction).
inline constexpr std::size_t kElem = sizeof(std::uint32_t);

// An op of `bytes` bytes of payload in all (per-rank blocks scaled down so that an allgather's
// output and a reduce-scatter's input are that size too).
inline Op opOfSize(Kind kind, std::size_t bytes, int size, int root, bool inPlace) {
  Op op{kind, 0, root, inPlace};
  const std::size_t whole = std::max<std::size_t>(2, bytes / kElem);
  if (kind == Kind::AllGather || kind == Kind::ReduceScatter)
    op.count = std::max<std::size_t>(1, whole / static_cast<std::size_t>(size));
  else if (kind != Kind::Barrier)
    op.count = whole;
  return op;
}

// Draws ops of minBytes..maxBytes (powers of two), log-uniform so that every size class, and so
// every algorithm the planner picks by size, comes up often.
class Sequence {
 public:
  Sequence(std::uint64_t seed, int size, std::size_t minBytes, std::size_t maxBytes)
      : random_(seed), size_(size), minLog_(log2(minBytes)), maxLog_(log2(maxBytes)) {}

  Op next() {
    const Kind kind = static_cast<Kind>(random_.below(kKinds));
    const int lg = minLog_ + static_cast<int>(random_.below(static_cast<std::uint64_t>(maxLog_ - minLog_ + 1)));
    std::size_t bytes = std::size_t{1} << lg;
    // Not only powers of two: counts that do not divide evenly among ranks or slices too.
    bytes += random_.below(bytes) & ~(kElem - 1);
    bytes = std::min(bytes, std::size_t{1} << maxLog_);
    const int root = static_cast<int>(random_.below(static_cast<std::uint64_t>(size_)));
    return opOfSize(kind, bytes, size_, root, random_.below(2) == 1);
  }

 private:
  static int log2(std::size_t v) {
    int l = 0;
    while ((std::size_t{2} << l) <= v) ++l;
    return l;
  }
  Random random_;
  int size_;
  int minLog_, maxLog_;
};

// Input element j of `rank` in op number `index`.
inline std::uint32_t input(int rank, std::uint64_t index, std::size_t j) {
  return static_cast<std::uint32_t>(static_cast<std::uint32_t>(rank + 1) * 2654435761u +
                                    static_cast<std::uint32_t>(index) * 40503u + static_cast<std::uint32_t>(j));
}

// Buffers for ops of up to maxBytes on a communicator of `size` ranks, kept across ops so that a
// soak measures kumi's memory, not the test's.
class Runner {
 public:
  Runner(std::size_t maxBytes, int rank, int size)
      : rank_(rank), size_(size),
        send_(maxBytes / kElem + 2 * static_cast<std::size_t>(size) + 2),
        recv_(maxBytes / kElem + 2 * static_cast<std::size_t>(size) + 2) {}

  // Runs op number `index` on comm. On success the output is checked in full; *wrong describes
  // the first wrong element ("" when all are right).
  kumiResult_t run(kumiComm_t comm, const Op& op, std::uint64_t index, std::string* wrong) {
    wrong->clear();
    const std::size_t n = static_cast<std::size_t>(size_), me = static_cast<std::size_t>(rank_);
    const std::size_t c = op.count;
    std::uint32_t* s = send_.data();
    std::uint32_t* r = recv_.data();
    kumiResult_t res = kumiSuccess;
    switch (op.kind) {
      case Kind::AllReduce: {
        if (op.inPlace) s = r;
        for (std::size_t j = 0; j < c; ++j) s[j] = input(rank_, index, j);
        res = kumiAllReduce(s, r, c, kumiUint32, kumiSum, comm, nullptr);
        if (res == kumiSuccess) check(r, c, [&](std::size_t j) { return sumOver(index, j); }, wrong);
        break;
      }
      case Kind::AllGather: {
        if (op.inPlace) s = r + me * c;
        for (std::size_t j = 0; j < c; ++j) s[j] = input(rank_, index, j);
        res = kumiAllGather(s, r, c, kumiUint32, comm, nullptr);
        if (res == kumiSuccess)
          check(r, n * c, [&](std::size_t j) { return input(static_cast<int>(j / c), index, j % c); }, wrong);
        break;
      }
      case Kind::Broadcast: {
        if (rank_ == op.root)
          for (std::size_t j = 0; j < c; ++j) s[j] = input(rank_, index, j);
        res = kumiBroadcast(s, r, c, kumiUint32, op.root, comm, nullptr);
        if (res == kumiSuccess) check(r, c, [&](std::size_t j) { return input(op.root, index, j); }, wrong);
        break;
      }
      case Kind::ReduceScatter: {
        for (std::size_t j = 0; j < n * c; ++j) s[j] = input(rank_, index, j);
        res = kumiReduceScatter(s, r, c, kumiUint32, kumiSum, comm, nullptr);
        if (res == kumiSuccess) check(r, c, [&](std::size_t j) { return sumOver(index, me * c + j); }, wrong);
        break;
      }
      case Kind::Barrier: res = kumiBarrier(comm, nullptr); break;
    }
    return res;
  }

 private:
  // Sum over all ranks of input(rank, index, j), wrapping as kumi's integer sum does.
  std::uint32_t sumOver(std::uint64_t index, std::size_t j) const {
    std::uint32_t t = 0;
    for (int q = 0; q < size_; ++q) t += input(q, index, j);
    return t;
  }

  template <class Want>
  static void check(const std::uint32_t* out, std::size_t count, Want want, std::string* wrong) {
    for (std::size_t j = 0; j < count; ++j) {
      const std::uint32_t w = want(j);
      if (out[j] != w) {
        *wrong = "element " + std::to_string(j) + " of " + std::to_string(count) + " is " + std::to_string(out[j]) +
                 ", expected " + std::to_string(w);
        return;
      }
    }
  }

  int rank_, size_;
  std::vector<std::uint32_t> send_, recv_;
};

}  // namespace kumi::mix
