// Every algorithm, checked exhaustively by the reference interpreter: all ranks' schedules run in
// one process, results compared element by element with a direct computation, for world sizes
// 1..32, awkward counts, in and out of place, several pipeline slice sizes, every op and type.
// Small cases also go through the race checker.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"
#include "collectives/interpreter.hpp"
#include "collectives/planner.hpp"
#include "core/element.hpp"
#include "../common/reference_data.hpp"
#include "core/error.hpp"
#include "core/types.hpp"

namespace kumi {
namespace {

using test::expectedReduction;
using test::inputValue;

struct Case {
  Collective coll;
  int n;
  std::uint64_t count;  // per the ScheduleKey convention
  bool inPlace;
  std::uint64_t slice;
  int root = 0;
  kumiDataType_t type = kumiFloat32;
  kumiRedOp_t op = kumiSum;
  bool recursiveDoubling = false;  // allreduce only: the other family
  std::optional<Algorithm> algo;   // forces an algorithm
  bool mixed = false;              // even ranks in place, odd ranks not (each rank decides alone)
  std::vector<int> hostOf;         // non-empty: the hierarchical allreduce over this host map
  bool inPlaceAt(int rank) const { return mixed ? rank % 2 == 0 : inPlace; }
};

std::string describe(const Case& c) {
  std::string hosts;
  for (int h : c.hostOf) hosts += cat(hosts.empty() ? " hosts=" : ",", h);
  return cat(collectiveName(c.coll), c.recursiveDoubling ? " (recursive doubling)" : "",
             c.algo ? cat(" (", algorithmName(*c.algo), ")") : std::string(), hosts, " n=", c.n, " count=", c.count, c.mixed ? " mixed in/out-of-place" : c.inPlace ? " in-place" : " out-of-place",
             " slice=", c.slice, " root=", c.root, " ", typeName(c.type), " ", opName(c.op));
}

// Runs the case through the interpreter and checks every output element. Returns "" if right.
std::string runCase(const Case& c, bool hazards) {
  const std::size_t es = typeSize(c.type);
  const int n = c.n;
  const std::uint64_t cnt = c.count;
  std::vector<PreparedSchedule> schedules;
  for (int r = 0; r < n; ++r) {
    ScheduleKey key{c.coll, n, r, cnt, c.root, c.inPlaceAt(r), c.op == kumiAvg, c.slice};
    Algorithm algo = algorithmsFor(key.coll).front();
    if (c.recursiveDoubling) algo = Algorithm::RecursiveDoubling;
    if (c.algo) algo = *c.algo;
    if (!c.hostOf.empty()) {
      key.hostOf = &c.hostOf;
      algo = Algorithm::Hierarchical;
    }
    schedules.emplace_back(buildSchedule(key, algo));
    if (hazards) {
      std::int64_t sendFromRecv = 0;
      if (c.coll == Collective::AllGather) sendFromRecv = static_cast<std::int64_t>(r * cnt);
      if (c.coll == Collective::ReduceScatter) sendFromRecv = -static_cast<std::int64_t>(r * cnt);
      std::string h = checkHazards(schedules.back(), c.inPlaceAt(r), sendFromRecv);
      if (!h.empty()) return cat("rank ", r, ": ", h);
    }
  }
  // Buffers: send and recv sized per collective; a sentinel byte pattern in recv catches
  // elements nobody wrote.
  const std::uint64_t un = static_cast<std::uint64_t>(n);
  std::uint64_t sendElems = cnt, recvElems = cnt;
  if (c.coll == Collective::ReduceScatter || c.coll == Collective::AllToAll) sendElems = cnt * un;
  if (c.coll == Collective::AllGather || c.coll == Collective::AllToAll) recvElems = cnt * un;
  std::vector<std::vector<std::byte>> sendBufs(static_cast<std::size_t>(n)), recvBufs(static_cast<std::size_t>(n));
  std::vector<RankCall> calls;
  for (int r = 0; r < n; ++r) {
    auto& sb = sendBufs[static_cast<std::size_t>(r)];
    auto& rb = recvBufs[static_cast<std::size_t>(r)];
    sb.assign(sendElems * es + 1, std::byte{0});
    rb.assign(recvElems * es + 1, std::byte{0x7B});
    void* recv = rb.data();
    const void* send = sb.data();
    void* fill = sb.data();
    std::uint64_t fillOffset = 0;  // element index in the global input numbering
    if (c.inPlaceAt(r)) {
      if (c.coll == Collective::AllGather) {
        send = rb.data() + static_cast<std::uint64_t>(r) * cnt * es;
        fill = const_cast<void*>(send);
      } else if (c.coll == Collective::ReduceScatter) {
        recv = sb.data() + static_cast<std::uint64_t>(r) * cnt * es;
      } else {
        send = recv;
        fill = recv;
      }
    }
    (void)fillOffset;
    const bool hasInput = !(c.coll == Collective::Broadcast && r != c.root);
    if (hasInput)
      for (std::uint64_t i = 0; i < sendElems; ++i) storeElement(c.type, fill, i, inputValue(r, i, c.op));
    calls.push_back({send, recv});
  }
  std::string err = interpret(schedules, calls, c.type, c.op);
  if (!err.empty()) return err;
  for (int r = 0; r < n; ++r) {
    const void* out = calls[static_cast<std::size_t>(r)].recv;
    if (c.coll == Collective::Reduce && r != c.root) continue;
    const std::uint64_t outElems = recvElems;
    for (std::uint64_t i = 0; i < outElems; ++i) {
      double want;
      switch (c.coll) {
        case Collective::AllReduce:
        case Collective::Reduce: want = expectedReduction(c.type, c.op, n, i); break;
        case Collective::ReduceScatter: want = expectedReduction(c.type, c.op, n, static_cast<std::uint64_t>(r) * cnt + i); break;
        case Collective::AllGather: want = roundToType(c.type, inputValue(static_cast<int>(i / cnt), i % cnt, c.op)); break;
        // Block j of the output is block r of rank j's input.
        case Collective::AllToAll:
          want = roundToType(c.type,
                             inputValue(static_cast<int>(i / cnt), static_cast<std::uint64_t>(r) * cnt + i % cnt, c.op));
          break;
        default: want = roundToType(c.type, inputValue(c.root, i, c.op)); break;
      }
      double got = loadElement(c.type, out, i);
      if (got != want) return cat("rank ", r, " element ", i, ": got ", got, ", want ", want);
    }
    // The byte after the output must be untouched (no write past the end).
    const auto& rb = recvBufs[static_cast<std::size_t>(r)];
    if (!c.inPlaceAt(r) && rb.back() != std::byte{0x7B}) return cat("rank ", r, ": wrote past the end of the output");
  }
  // Inputs must be untouched where the API promises it (out of place: all of them).
  if (c.coll != Collective::Broadcast)
    for (int r = 0; r < n; ++r)
      if (!c.inPlaceAt(r))
      for (std::uint64_t i = 0; i < sendElems; ++i)
        if (loadElement(c.type, sendBufs[static_cast<std::size_t>(r)].data(), i) != roundToType(c.type, inputValue(r, i, c.op)))
          return cat("rank ", r, ": input element ", i, " was modified");
  return {};
}

const Collective kCollectives[] = {Collective::AllReduce, Collective::ReduceScatter, Collective::AllGather,
                                   Collective::Broadcast, Collective::Reduce};

std::vector<std::uint64_t> countsFor(int n) {
  std::vector<std::uint64_t> v = {0, 1, 2, 3, 7, static_cast<std::uint64_t>(n) - 1 + 0, static_cast<std::uint64_t>(n),
                                  static_cast<std::uint64_t>(n) + 1, 2 * static_cast<std::uint64_t>(n) + 3, 100, 1237};
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// KUMI_TEST_MAX_WORLD lowers the bound for slow (sanitized) builds; the Release lane runs 32.
int maxWorld() {
  const char* v = std::getenv("KUMI_TEST_MAX_WORLD");
  return v && *v ? std::atoi(v) : 32;
}

TEST(Schedules, EveryCollectiveWorldSizes1To32) {
  int cases = 0;
  const int top = maxWorld();
  std::printf("world sizes 1..%d\n", top);
  for (int n = 1; n <= top; ++n)
    for (Collective coll : kCollectives)
      for (std::uint64_t count : countsFor(n))
        for (bool inPlace : {false, true})
          for (std::uint64_t slice : {std::uint64_t{3}, std::uint64_t{64}, std::uint64_t{1} << 20}) {
            Case c{coll, n, count, inPlace, slice};
            c.root = (coll == Collective::Broadcast || coll == Collective::Reduce) ? (n > 2 ? n / 2 + 1 : n - 1) : 0;
            const bool hazards = n <= 6 && count <= 100;
            ASSERT_EQ(runCase(c, hazards), "") << describe(c);
            ++cases;
            if (coll == Collective::AllReduce && slice == 64) {
              c.recursiveDoubling = true;
              ASSERT_EQ(runCase(c, hazards), "") << describe(c);
            }
          }
  EXPECT_GT(cases, 200 * top);
}

// Element-by-element slicing costs the host-map tests minutes under the sanitizers (a step per
// element per rank, and the hazard check is quadratic in steps); the Release lane runs it for
// every count, and counts up to 7 take the sanitized lanes through the same code.
bool sliceIsWorthIt(std::uint64_t slice, std::uint64_t count) { return slice > 1 || maxWorld() >= 32 || count <= 7; }

// Host maps of every shape the hierarchical allreduce must handle: one host, one rank per host,
// even hosts, uneven hosts, and ranks of a host that are not contiguous.
std::vector<std::vector<int>> hostMapsFor(int n) {
  std::vector<std::vector<int>> maps;
  for (int hosts : {1, 2, 3, n}) {
    if (hosts > n) continue;
    std::vector<int> contiguous, interleaved;
    for (int r = 0; r < n; ++r) {
      contiguous.push_back(static_cast<int>(static_cast<long long>(r) * hosts / n));
      interleaved.push_back(r % hosts);
    }
    maps.push_back(contiguous);
    maps.push_back(interleaved);
  }
  if (n >= 4) {  // very uneven: one host with a single rank, another with the rest
    std::vector<int> lopsided(static_cast<std::size_t>(n), 1);
    lopsided[static_cast<std::size_t>(n) - 2] = 0;
    maps.push_back(lopsided);
  }
  return maps;
}

TEST(Schedules, HierarchicalAllReduceOnEveryHostMap) {
  int cases = 0;
  const int top = std::min(maxWorld(), 12);
  for (int n = 1; n <= top; ++n)
    for (const auto& map : hostMapsFor(n))
      for (std::uint64_t count : countsFor(n))
        for (bool inPlace : {false, true})
          for (std::uint64_t slice : {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{1} << 20}) {
            if (!sliceIsWorthIt(slice, count)) continue;
            Case c{Collective::AllReduce, n, count, inPlace, slice};
            c.hostOf = map;
            ASSERT_EQ(runCase(c, n <= 6 && count <= 100), "") << describe(c);
            ++cases;
          }
  // Every op and type, averaging included (the division happens once, after the last sum).
  for (kumiRedOp_t op : {kumiSum, kumiProd, kumiMin, kumiMax, kumiAvg})
    for (kumiDataType_t t : {kumiFloat32, kumiFloat16, kumiBfloat16, kumiInt32, kumiUint8, kumiFloat64})
      for (const auto& map : hostMapsFor(5)) {
        Case c{Collective::AllReduce, 5, 37, false, 4, 0, t, op};
        c.hostOf = map;
        ASSERT_EQ(runCase(c, true), "") << describe(c);
        c.mixed = true;
        ASSERT_EQ(runCase(c, false), "") << describe(c);
        ++cases;
      }
  EXPECT_GT(cases, 1000);
}

TEST(Schedules, HierarchicalAllGatherOnEvenHostMaps) {
  int cases = 0;
  const int top = std::min(maxWorld(), 12);
  for (int n = 1; n <= top; ++n)
    for (const auto& map : hostMapsFor(n)) {
      if (!evenHosts(map)) continue;
      for (std::uint64_t count : countsFor(n))
        for (bool inPlace : {false, true})
          for (std::uint64_t slice : {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{1} << 20}) {
            if (!sliceIsWorthIt(slice, count)) continue;
            Case c{Collective::AllGather, n, count, inPlace, slice};
            c.hostOf = map;
            ASSERT_EQ(runCase(c, n <= 6 && count <= 100), "") << describe(c);
            c.mixed = true;
            ASSERT_EQ(runCase(c, false), "") << describe(c);
            ++cases;
          }
    }
  EXPECT_GT(cases, 300);
  EXPECT_TRUE(evenHosts({0, 0, 1, 1}));
  EXPECT_TRUE(evenHosts({0, 1, 0, 1}));
  EXPECT_FALSE(evenHosts({0, 0, 1}));
}

// Every algorithm of every collective (the node-aware ones have their own tests), world sizes
// 1..64 with primes and non-powers of two, in and out of place, sliced finely and not at all.
TEST(Schedules, EveryAlgorithmOfEveryCollectiveWorldSizes1To64) {
  int cases = 0;
  const int top = std::min(64, 2 * maxWorld());
  for (int n = 1; n <= top; ++n)
    for (Collective coll : kCollectives)
      for (Algorithm algo : algorithmsFor(coll)) {
        if (algo == Algorithm::Hierarchical) continue;
        for (std::uint64_t count : {std::uint64_t{0}, std::uint64_t{1}, static_cast<std::uint64_t>(n) + 1, std::uint64_t{101}})
          for (bool inPlace : {false, true})
            for (std::uint64_t slice : {std::uint64_t{3}, std::uint64_t{1} << 20}) {
              Case c{coll, n, count, inPlace, slice};
              c.algo = algo;
              c.root = (coll == Collective::Broadcast || coll == Collective::Reduce) ? (n > 2 ? n / 2 + 1 : n - 1) : 0;
              ASSERT_EQ(runCase(c, n <= 6 && count <= 101), "") << describe(c);
              ++cases;
            }
      }
  EXPECT_GT(cases, 1000);
}

TEST(Schedules, NewAlgorithmsEveryOpTypeAndRoot) {
  for (int n : {1, 2, 3, 5, 6, 8, 13}) {
    for (kumiRedOp_t op : {kumiSum, kumiProd, kumiMin, kumiMax, kumiAvg})
      for (kumiDataType_t t : {kumiFloat32, kumiFloat16, kumiBfloat16, kumiInt8, kumiUint64, kumiFloat64})
        for (Algorithm a : {Algorithm::Tree, Algorithm::Rabenseifner}) {
          Case c{Collective::AllReduce, n, 37, false, 4, 0, t, op};
          c.algo = a;
          ASSERT_EQ(runCase(c, true), "") << describe(c);
          c.mixed = true;
          ASSERT_EQ(runCase(c, false), "") << describe(c);
        }
    for (int root = 0; root < n; ++root) {
      Case bc{Collective::Broadcast, n, 29, false, 4, root};
      bc.algo = Algorithm::Binomial;
      ASSERT_EQ(runCase(bc, true), "") << describe(bc);
      Case rc{Collective::Reduce, n, 29, false, 4, root, kumiFloat32, kumiAvg};
      rc.algo = Algorithm::Binomial;
      ASSERT_EQ(runCase(rc, true), "") << describe(rc);
      rc.mixed = true;
      ASSERT_EQ(runCase(rc, false), "") << describe(rc);
    }
    Case ag{Collective::AllGather, n, 9, false, 2};
    ag.algo = Algorithm::RecursiveDoubling;
    ag.mixed = true;
    ASSERT_EQ(runCase(ag, false), "") << describe(ag);
  }
}

// Whether the reduction of the reference inputs over n ranks is exact in type t, so that every
// order of combining gives the reference result: sums reach 9n, products 2^ceil(n/4).
bool exactIn(kumiDataType_t t, kumiRedOp_t op, int n) {
  if (op == kumiMin || op == kumiMax) return true;
  const double top = op == kumiProd ? std::ldexp(1.0, (n + 3) / 4) : 9.0 * n;
  switch (t) {
    case kumiInt8: return top <= 127;
    case kumiUint8: return top <= 255;
    case kumiFloat16: return top <= (op == kumiProd ? 32768 : 2048);
    case kumiBfloat16: return op == kumiProd || top <= 256;
    default: return true;
  }
}

// The recursive-halving reduce-scatter wherever folding a world that is not a power of two can
// go wrong: every world size to 64, outputs shorter than the world, slices that cut blocks
// unevenly, each rank in or out of place on its own, every op (the average divides once, on
// the rank that finishes a block, before it reaches a folded-away rank) and every type.
TEST(Schedules, RabenseifnerReduceScatterWorldSizes1To64) {
  int cases = 0;
  const int top = std::min(64, 2 * maxWorld());
  for (int n = 1; n <= top; ++n) {
    const auto un = static_cast<std::uint64_t>(n);
    for (std::uint64_t count : {std::uint64_t{0}, std::uint64_t{1}, un / 2 + 1, std::uint64_t{37}})
      for (std::uint64_t slice : {std::uint64_t{2}, std::uint64_t{5}, std::uint64_t{1} << 20})
        for (int placement = 0; placement < 3; ++placement) {
          Case c{Collective::ReduceScatter, n, count, placement == 1, slice};
          c.mixed = placement == 2;
          c.op = static_cast<kumiRedOp_t>(cases % kumiNumOps);
          c.algo = Algorithm::Rabenseifner;
          ASSERT_EQ(runCase(c, n <= 8 && count * un <= 300), "") << describe(c);
          ++cases;
        }
    for (int op = 0; op < kumiNumOps; ++op)
      for (int t = 0; t < kumiNumTypes; ++t) {
        Case c{Collective::ReduceScatter, n, 5, false, 2, 0, static_cast<kumiDataType_t>(t), static_cast<kumiRedOp_t>(op)};
        if (!exactIn(c.type, c.op, n)) continue;
        c.algo = Algorithm::Rabenseifner;
        c.mixed = true;
        ASSERT_EQ(runCase(c, false), "") << describe(c);
        ++cases;
      }
  }
  EXPECT_GT(cases, 70 * top);
}

TEST(Schedules, RabenseifnerReduceScatterScratchIsAFractionOfTheInput) {
  // Partial sums of the half kept at the first step, and a few slices passing through on the
  // ranks that absorb a folded-away one: at most half the input in a power-of-two world, two
  // thirds otherwise.
  const std::uint64_t count = 1 << 12, slice = 1 << 8;
  for (int n = 1; n <= 64; ++n)
    for (int r = 0; r < n; ++r) {
      const Schedule s = rabenseifnerReduceScatter({Collective::ReduceScatter, n, r, count, 0, r % 2 == 0, false, slice});
      const std::uint64_t input = count * static_cast<std::uint64_t>(n);
      if ((n & (n - 1)) == 0) {
        EXPECT_LE(2 * s.scratchCount, input) << "n=" << n << " rank " << r;
      }
      EXPECT_LE(3 * s.scratchCount, 2 * input + 3 * 4 * slice) << "n=" << n << " rank " << r;
    }
}

TEST(Schedules, RanksMayChooseInPlaceIndependently) {
  // In place is each rank's own choice: the messages on the wire must not depend on it.
  for (int n : {2, 3, 4, 5, 8})
    for (Collective coll : kCollectives)
      for (std::uint64_t count : {std::uint64_t{1}, std::uint64_t{17}, std::uint64_t{300}, std::uint64_t{1237}}) {
        Case c{coll, n, count, false, 8};
        c.mixed = true;
        c.root = n - 1;
        ASSERT_EQ(runCase(c, n <= 4 && count <= 300), "") << describe(c);
        if (coll == Collective::AllReduce) {
          c.recursiveDoubling = true;
          ASSERT_EQ(runCase(c, false), "") << describe(c);
        }
      }
}

TEST(Schedules, EveryOpAndType) {
  for (int n : {1, 2, 3, 4, 5, 7, 8})
    for (Collective coll : {Collective::AllReduce, Collective::ReduceScatter, Collective::Reduce})
      for (int t = 0; t < kumiNumTypes; ++t)
        for (int op = 0; op < kumiNumOps; ++op)
          for (std::uint64_t count : {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{129}})
            for (bool inPlace : {false, true}) {
              Case c{coll, n, count, inPlace, 16};
              c.type = static_cast<kumiDataType_t>(t);
              c.op = static_cast<kumiRedOp_t>(op);
              c.root = n - 1;
              ASSERT_EQ(runCase(c, false), "") << describe(c);
              if (coll == Collective::AllReduce) {
                c.recursiveDoubling = true;
                ASSERT_EQ(runCase(c, false), "") << describe(c);
              }
            }
}

TEST(Schedules, EveryRootForRootedCollectives) {
  for (int n : {2, 3, 5, 8, 13})
    for (Collective coll : {Collective::Broadcast, Collective::Reduce})
      for (int root = 0; root < n; ++root)
        for (bool inPlace : {false, true}) {
          Case c{coll, n, 77, inPlace, 8};
          c.root = root;
          ASSERT_EQ(runCase(c, n <= 5), "") << describe(c);
        }
}

TEST(Schedules, BarrierAndPointToPointMatch) {
  for (int n = 1; n <= 33; ++n) {
    std::vector<PreparedSchedule> s;
    std::vector<RankCall> calls(static_cast<std::size_t>(n), RankCall{nullptr, nullptr});
    for (int r = 0; r < n; ++r) s.emplace_back(disseminationBarrier({Collective::Barrier, n, r, 0, 0, false, false, 1}));
    ASSERT_EQ(interpret(s, calls, kumiUint8, kumiSum), "") << "barrier n=" << n;
    // Every rank must hear, directly or transitively, from every other: ceil(log2 n) rounds.
    int rounds = 0;
    for (int d = 1; d < n; d *= 2) ++rounds;
    EXPECT_EQ(s[0].schedule.steps.size(), static_cast<std::size_t>(2 * rounds)) << n;
  }
  std::vector<float> a(1000), b(1000, -1.f);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  std::vector<PreparedSchedule> s;
  s.emplace_back(directSendRecv({Collective::Send, 2, 0, 1000, 1, false, false, 64}));
  s.emplace_back(directSendRecv({Collective::Recv, 2, 1, 1000, 0, false, false, 64}));
  ASSERT_EQ(interpret(s, {{a.data(), nullptr}, {nullptr, b.data()}}, kumiFloat32, kumiSum), "");
  EXPECT_EQ(a, b);
}

TEST(Schedules, InterpreterCatchesBrokenSchedules) {
  // A receive with no matching send must be reported as a deadlock, not pass.
  Schedule lonely;
  lonely.add({StepKind::Recv, 1, {}, {Buf::Recv, 0, 4}});
  Schedule silent;
  std::vector<PreparedSchedule> s;
  s.emplace_back(lonely);
  s.emplace_back(silent);
  std::vector<float> out(4);
  EXPECT_NE(interpret(s, {{nullptr, out.data()}, {nullptr, nullptr}}, kumiFloat32, kumiSum).find("deadlock"), std::string::npos);
  // A size mismatch between sender and receiver is named.
  Schedule send4, recv8;
  send4.add({StepKind::Send, 1, {Buf::Send, 0, 4}, {}});
  recv8.add({StepKind::Recv, 0, {}, {Buf::Recv, 0, 8}});
  std::vector<PreparedSchedule> m;
  m.emplace_back(send4);
  m.emplace_back(recv8);
  std::vector<float> in(8), out8(8);
  EXPECT_NE(interpret(m, {{in.data(), nullptr}, {nullptr, out8.data()}}, kumiFloat32, kumiSum).find("expected"), std::string::npos);
  // The race checker sees a send reading memory that a concurrent receive overwrites.
  Schedule racy;
  racy.add({StepKind::Send, 1, {Buf::Recv, 0, 4}, {}});
  racy.add({StepKind::Recv, 1, {}, {Buf::Recv, 2, 4}});
  EXPECT_NE(checkHazards(PreparedSchedule(racy), false, 0).find("race"), std::string::npos);
}

TEST(Schedules, TheBuilderOrdersPartlyOverlappingAccesses) {
  // A run received whole and then sent in parts (and the reverse): each part must wait for the
  // write that covers it, and a write over both parts for both reads.
  Schedule s;
  ScheduleBuilder b(s, false);
  const auto whole = b.recv(1, {Buf::Recv, 0, 8});
  const auto lowHalf = b.send(1, {Buf::Recv, 0, 4});
  const auto highHalf = b.send(1, {Buf::Recv, 4, 4});
  const auto middle = b.recvReduce(1, {Buf::Send, 2, 4}, {Buf::Recv, 2, 4});
  const auto again = b.recv(1, {Buf::Recv, 0, 8});
  auto depsOf = [&](std::uint32_t i) {
    const Step& st = s.steps[i];
    return std::vector<std::uint32_t>(s.deps.begin() + st.depBegin, s.deps.begin() + st.depBegin + st.depCount);
  };
  using V = std::vector<std::uint32_t>;
  EXPECT_EQ(depsOf(lowHalf), V{whole});
  EXPECT_EQ(depsOf(highHalf), V{whole});
  EXPECT_EQ(depsOf(middle), (V{whole, lowHalf, highHalf})) << "it overwrites parts both sends read";
  EXPECT_EQ(depsOf(again), (V{whole, lowHalf, highHalf, middle}));
  EXPECT_EQ(checkHazards(PreparedSchedule(s), false, 0), "");
  // Disjoint ranges stay independent, whatever their sizes.
  Schedule t;
  ScheduleBuilder c(t, false);
  c.recv(1, {Buf::Recv, 0, 8});
  const auto beside = c.recv(1, {Buf::Recv, 8, 3});
  EXPECT_EQ(t.steps[beside].depCount, 0u);
}

TEST(Planner, AlgoSpecFollowsNcclSyntax) {
  AlgorithmFilter any;
  EXPECT_TRUE(any.allows(Collective::AllReduce, Algorithm::Ring));
  AlgorithmFilter ringOnly("ring");
  EXPECT_TRUE(ringOnly.allows(Collective::AllReduce, Algorithm::Ring));
  EXPECT_FALSE(ringOnly.allows(Collective::AllReduce, Algorithm::RecursiveDoubling));
  EXPECT_TRUE(ringOnly.allows(Collective::Broadcast, Algorithm::Chain)) << "a list naming none of a collective's algorithms leaves it alone";
  AlgorithmFilter perColl("allreduce:rd;broadcast:chain");
  EXPECT_FALSE(perColl.allows(Collective::AllReduce, Algorithm::Ring));
  EXPECT_TRUE(perColl.allows(Collective::AllReduce, Algorithm::RecursiveDoubling));
  AlgorithmFilter exclude("allreduce:^ring");
  EXPECT_FALSE(exclude.allows(Collective::AllReduce, Algorithm::Ring));
  EXPECT_TRUE(exclude.excludes(Collective::AllReduce, Algorithm::Ring));
  EXPECT_FALSE(exclude.excludes(Collective::AllReduce, Algorithm::Tree));
  EXPECT_FALSE(exclude.excludes(Collective::AllGather, Algorithm::Ring)) << "the rule is for allreduce only";
  EXPECT_FALSE(perColl.excludes(Collective::AllReduce, Algorithm::Ring)) << "a positive list only prefers";
  EXPECT_TRUE(AlgorithmFilter("^tree").excludes(Collective::AllReduce, Algorithm::Tree));
  auto message = [](const char* spec) {
    try {
      AlgorithmFilter f(spec);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kumiInvalidArgument);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message("allreduce:butterfly").find("unknown algorithm 'butterfly'"), std::string::npos);
  EXPECT_NE(message("allscatter:ring").find("unknown collective 'allscatter'"), std::string::npos);
  EXPECT_NE(message("allreduce:^ring,rd,hierarchical,tree,rabenseifner").find("leaves allreduce no algorithm"),
            std::string::npos);
  EXPECT_NE(message("broadcast:tree").find("leaves broadcast no algorithm"), std::string::npos)
      << "an algorithm of another collective";
  EXPECT_EQ(message("allreduce:tree;broadcast:binomial;allgather:rd"), "accepted");
  EXPECT_EQ(message("alltoall:pairwise"), "accepted");
  EXPECT_NE(message("alltoall:ring").find("leaves alltoall no algorithm (it has: pairwise)"), std::string::npos);
  EXPECT_TRUE(ringOnly.allows(Collective::AllToAll, Algorithm::Pairwise)) << "alltoall has no ring";
  EXPECT_NE(message("broadcast:ring").find("leaves broadcast no algorithm"), std::string::npos);
}

// The pairwise all-to-all (out of place only): world sizes 1..64 with primes, counts of 0, 1, odd,
// and blocks cut into several slices; every type on a few worlds.
TEST(Schedules, PairwiseAllToAllWorldSizes1To64) {
  int cases = 0;
  const int top = std::min(64, 2 * maxWorld());
  for (int n = 1; n <= top; ++n)
    for (std::uint64_t count : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{7}, static_cast<std::uint64_t>(n) + 2,
                                std::uint64_t{257}})
      for (std::uint64_t slice : {std::uint64_t{3}, std::uint64_t{64}, std::uint64_t{1} << 20}) {
        if (slice == 3 && count > 100 && n > 16) continue;  // hundreds of thousands of steps, nothing new
        Case c{Collective::AllToAll, n, count, false, slice};
        c.algo = Algorithm::Pairwise;
        ASSERT_EQ(runCase(c, n <= 6 && count <= 64), "") << describe(c);
        ++cases;
      }
  EXPECT_GT(cases, 10 * top);
  for (int n : {1, 2, 3, 5, 8, 13})
    for (int t = 0; t < kumiNumTypes; ++t)
      for (std::uint64_t count : {std::uint64_t{5}, std::uint64_t{37}}) {
        Case c{Collective::AllToAll, n, count, false, 4, 0, static_cast<kumiDataType_t>(t)};
        c.algo = Algorithm::Pairwise;
        ASSERT_EQ(runCase(c, n <= 5), "") << describe(c);
      }
}

TEST(Schedules, PairwiseAllToAllTalksToOnePeerPerStep) {
  const int n = 7, r = 3;
  const std::uint64_t count = 10, slice = 4;  // 3 slices per block
  const Schedule s = pairwiseAllToAll({Collective::AllToAll, n, r, count, 0, false, false, slice});
  EXPECT_EQ(s.algorithm, "pairwise");
  std::vector<int> sendPeers, recvPeers;
  std::uint64_t sent = 0, received = 0, copied = 0;
  for (const Step& st : s.steps) {
    if (st.kind == StepKind::Send) {
      if (sendPeers.empty() || sendPeers.back() != st.peer) sendPeers.push_back(st.peer);
      EXPECT_EQ(st.src.offset / count, static_cast<std::uint64_t>(st.peer)) << "block j goes to rank j";
      sent += st.src.count;
    } else if (st.kind == StepKind::Recv) {
      if (recvPeers.empty() || recvPeers.back() != st.peer) recvPeers.push_back(st.peer);
      EXPECT_EQ(st.dst.offset / count, static_cast<std::uint64_t>(st.peer)) << "rank j's block lands in block j";
      received += st.dst.count;
    } else {
      ASSERT_EQ(st.kind, StepKind::Copy);
      EXPECT_EQ(st.src.offset, r * count);
      EXPECT_EQ(st.dst.offset, r * count);
      copied += st.dst.count;
    }
  }
  EXPECT_EQ(sendPeers, (std::vector<int>{4, 5, 6, 0, 1, 2}));
  EXPECT_EQ(recvPeers, (std::vector<int>{2, 1, 0, 6, 5, 4}));
  EXPECT_EQ(sent, (n - 1) * count);
  EXPECT_EQ(received, (n - 1) * count);
  EXPECT_EQ(copied, count);
  EXPECT_EQ(s.scratchCount, 0u);
  // Sends run at most two steps ahead of the receives: the first two steps' sends wait for
  // nothing, later ones for a receive.
  for (const Step& st : s.steps)
    if (st.kind == StepKind::Send) {
      const bool early = st.peer == 4 || st.peer == 5;
      EXPECT_EQ(st.depCount, early ? 0u : 1u) << "send to " << st.peer;
    }
  // A world of one is a copy; in place is refused before any schedule is built.
  const Schedule one = pairwiseAllToAll({Collective::AllToAll, 1, 0, count, 0, false, false, slice});
  ASSERT_EQ(one.steps.size(), 1u);
  EXPECT_EQ(one.steps[0].kind, StepKind::Copy);
  EXPECT_THROW(pairwiseAllToAll({Collective::AllToAll, 2, 0, count, 0, true, false, slice}), Error);
}

TEST(Schedules, ScratchStaysBoundedWhateverTheSize) {
  // In-place reduce-scatter and chain reduce use scratch slots: a few slices, not the message.
  const std::uint64_t slice = 1 << 16, huge = std::uint64_t{1} << 30;
  auto rs = ringReduceScatter({Collective::ReduceScatter, 4, 1, huge, 0, true, false, slice});
  auto red = chainReduce({Collective::Reduce, 4, 2, huge, 0, false, false, slice});
  EXPECT_LE(rs.scratchCount, 8 * slice);
  EXPECT_LE(red.scratchCount, 4 * slice);
  EXPECT_GT(red.scratchCount, 0u);
}

}  // namespace
}  // namespace kumi
