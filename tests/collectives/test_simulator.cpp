// The simulator against what latency-bandwidth arithmetic says the algorithms cost.
#include <gtest/gtest.h>

#include "collectives/builder.hpp"
#include "collectives/planner.hpp"
#include "collectives/simulator.hpp"

namespace kumi {
namespace {

std::vector<PreparedSchedule> schedulesFor(Collective coll, Algorithm algo, int n, std::uint64_t count,
                                           std::uint64_t slice, const std::vector<int>* hostOf = nullptr) {
  std::vector<PreparedSchedule> out;
  for (int r = 0; r < n; ++r) {
    ScheduleKey k{coll, n, r, count, 0, false, false, slice};
    k.hostOf = hostOf;
    out.emplace_back(buildSchedule(k, algo));
  }
  return out;
}

SimCluster oneRankPerHost(int n) {
  SimCluster c;
  for (int r = 0; r < n; ++r) c.hostOf.push_back(r);
  c.nic = {10, 1.0};  // 10 us, 1 GB/s
  c.reduceGbps = c.copyGbps = 1e6;  // free, to compare with the network-only formula
  return c;
}

TEST(Simulator, RingAllReduceMatchesTheAlphaBetaFormula) {
  for (int n : {2, 4, 7}) {
    const std::uint64_t count = 1 << 22;  // 16 MiB of float32
    const double bytes = static_cast<double>(count) * 4;
    // One slice per ring chunk: 2(n-1) rounds of one chunk each.
    auto ps = schedulesFor(Collective::AllReduce, Algorithm::Ring, n, count, count);
    SimResult res = simulate(ps, oneRankPerHost(n), 4);
    ASSERT_EQ(res.error, "");
    const double chunk = bytes / n;
    const double want = 2.0 * (n - 1) * (10e-6 + chunk / 1e9);
    EXPECT_NEAR(res.seconds, want, 0.05 * want) << "n=" << n;
  }
}

TEST(Simulator, RecursiveDoublingSmallMessagesCostLogRounds) {
  const int n = 8;
  auto ps = schedulesFor(Collective::AllReduce, Algorithm::RecursiveDoubling, n, 2, 1 << 20);
  SimResult res = simulate(ps, oneRankPerHost(n), 4);
  ASSERT_EQ(res.error, "");
  EXPECT_NEAR(res.seconds, 3 * 10e-6, 1e-6);  // log2(8) rounds of latency
  auto ring = schedulesFor(Collective::AllReduce, Algorithm::Ring, n, 2, 1 << 20);
  EXPECT_GT(simulate(ring, oneRankPerHost(n), 4).seconds, 2 * res.seconds) << "the ring pays 2(n-1) latencies";
}

// 2 hosts x 2 ranks, fast inside a host, 1 GB/s between.
SimCluster twoHostsOfTwo() {
  SimCluster c;
  c.hostOf = {0, 0, 1, 1};
  c.intra = {0.5, 20};
  c.nic = {10, 1.0};
  c.reduceGbps = c.copyGbps = 100;
  return c;
}

TEST(Simulator, HierarchicalCrossesTheNetworkOncePerHost) {
  // The flat ring's cross-host link carries 1.5x what the hierarchical one does.
  const SimCluster c = twoHostsOfTwo();
  const std::uint64_t count = 1 << 22;
  const std::uint64_t slice = 1 << 16;
  auto ring = simulate(schedulesFor(Collective::AllReduce, Algorithm::Ring, 4, count, slice), c, 4);
  auto hier = simulate(schedulesFor(Collective::AllReduce, Algorithm::Hierarchical, 4, count, slice, &c.hostOf), c, 4);
  ASSERT_EQ(ring.error, "");
  ASSERT_EQ(hier.error, "");
  EXPECT_NEAR(ring.seconds / hier.seconds, 1.5, 0.15);
}

TEST(Simulator, TheDoubleBinaryTreesShareTheLinkInsteadOfTakingTurns) {
  // 2 hosts x 2 ranks: the trees' cross-host edges carry 1.5x the message each way, as the
  // ring's do, so with their slices pipelined the tree should take little more than the ring
  // (1.08x here: its pipeline fills and drains). When a connection carried one tree's result
  // ahead of the other tree's input for the same slice, the trees took turns on the link: 1.59x
  // the ring here, 1.62x measured on the virtual cluster.
  const SimCluster c = twoHostsOfTwo();
  const std::uint64_t count = 1 << 18;  // 1 MiB of float32
  const std::uint64_t slice = sliceElements(Collective::AllReduce, Algorithm::Tree, count, 4, 4, 0);
  ASSERT_LT(slice * 8, count) << "several slices per tree";
  auto ring = simulate(schedulesFor(Collective::AllReduce, Algorithm::Ring, 4, count, count / 4), c, 4);
  auto tree = simulate(schedulesFor(Collective::AllReduce, Algorithm::Tree, 4, count, slice), c, 4);
  ASSERT_EQ(ring.error, "");
  ASSERT_EQ(tree.error, "");
  EXPECT_LT(tree.seconds, 1.15 * ring.seconds) << tree.seconds / ring.seconds;
  // A deep tree (16 hosts, height 4) needs several slices in flight on the way to the root and
  // back. A rank inner in one tree and a leaf in the other sends its half up twice and down
  // twice: twice the message through its NIC, which bounds the time from below. The model
  // reaches 1.6x that bound (the pipeline fills and drains, and a rank's sends to its parent and
  // to its children queue on one NIC); taking turns cost 4.7x.
  SimCluster deep = oneRankPerHost(16);
  const std::uint64_t big = 1 << 22;
  const std::uint64_t deepSlice = sliceElements(Collective::AllReduce, Algorithm::Tree, big, 4, 16, 0);
  auto deepTree = simulate(schedulesFor(Collective::AllReduce, Algorithm::Tree, 16, big, deepSlice), deep, 4);
  ASSERT_EQ(deepTree.error, "");
  const double bound = 2.0 * static_cast<double>(big) * 4 / 1e9;
  EXPECT_GT(deepTree.seconds, bound);
  EXPECT_LT(deepTree.seconds, 2.5 * bound) << deepTree.seconds / bound;
}

TEST(Simulator, LargeSharedMemoryMessagesAreReadByTheReceiverWhenItGetsToThem) {
  // Rank 1 is busy for 1 ms (a copy) before its receive of 1 MiB from rank 0. Copied in by the
  // sender (eager), the transfer overlaps rank 1's work; beyond the eager limit the receiver
  // reads it itself (cross-memory attach), after its work: 1 ms more at 1 GB/s.
  const std::uint64_t count = 1 << 20;  // bytes (elemSize 1)
  std::vector<PreparedSchedule> ps;
  {
    Schedule s0, s1;
    ScheduleBuilder(s0, false).send(1, {Buf::Send, 0, count});
    ScheduleBuilder b1(s1, false);
    b1.copy({Buf::Send, 0, count}, {Buf::Scratch, 0, count});
    b1.recv(0, {Buf::Recv, 0, count});
    s1.scratchCount = count;
    ps.emplace_back(std::move(s0));
    ps.emplace_back(std::move(s1));
  }
  SimCluster c;
  c.hostOf = {0, 0};
  c.intra = {0, 1.048576};  // 1 MiB per ms
  c.copyGbps = 1.048576;
  const double eager = simulate(ps, c, 1).seconds;
  c.intraEagerBytes = 512 << 10;
  const SimResult pulled = simulate(ps, c, 1);
  ASSERT_EQ(pulled.error, "");
  EXPECT_NEAR(eager, 1e-3, 1e-5);
  EXPECT_NEAR(pulled.seconds, 2e-3, 1e-5);
  c.intraEagerBytes = 2 << 20;  // now it fits: copied by the sender again
  EXPECT_NEAR(simulate(ps, c, 1).seconds, eager, 1e-9);
}

// Four ranks on a host of two cores, of which `busy` copy a megabyte at 1 GB/s (1 ms of CPU) and
// the others have nothing to do.
double copiesOnTwoCores(int busy, int cores) {
  const std::uint64_t count = 1 << 20;  // bytes (elemSize 1)
  std::vector<PreparedSchedule> ps;
  for (int r = 0; r < 4; ++r) {
    Schedule s;
    if (r < busy) ScheduleBuilder(s, false).copy({Buf::Send, 0, count}, {Buf::Recv, 0, count});
    ps.emplace_back(std::move(s));
  }
  SimCluster c;
  c.hostOf = {0, 0, 0, 0};
  c.coresPerHost = cores;
  c.copyGbps = 1.048576;  // 1 MiB per ms
  const SimResult res = simulate(ps, c, 1);
  EXPECT_EQ(res.error, "");
  return res.seconds;
}

TEST(Simulator, RanksShareTheCoresOnlyWhileTheyHaveWork) {
  // Idle ranks leave their cores to the busy ones: two busy ranks of four run at full speed on
  // two cores; four take twice as long; without a core count each rank has its own.
  EXPECT_NEAR(copiesOnTwoCores(1, 2), 1e-3, 1e-6);
  EXPECT_NEAR(copiesOnTwoCores(2, 2), 1e-3, 1e-6);
  EXPECT_NEAR(copiesOnTwoCores(3, 2), 2e-3, 1e-6);
  EXPECT_NEAR(copiesOnTwoCores(4, 2), 2e-3, 1e-6);
  EXPECT_NEAR(copiesOnTwoCores(4, 0), 1e-3, 1e-6);
  EXPECT_NEAR(copiesOnTwoCores(4, 4), 1e-3, 1e-6);
}

TEST(Simulator, CallsWhoseBuffersFitTheCacheRunAtCachedRates) {
  // Two ranks of one host, a ring allreduce of 1 MiB each: send and receive buffers of both ranks
  // make 4 MiB. Every cost is CPU work (latency 0), so the cached rates, 4x the memory ones, make
  // it 4x faster when those 4 MiB fit in half the cache, and not a byte earlier.
  SimCluster c;
  c.hostOf = {0, 0};
  c.intra = {0, 10, 0};
  c.copyGbps = c.reduceGbps = 10;
  c.cachedCopyGbps = c.cachedReduceGbps = 40;
  const std::uint64_t count = 1 << 18;  // float32
  const double working = 2.0 * 2 * count * 4;
  auto ps = schedulesFor(Collective::AllReduce, Algorithm::Ring, 2, count, count);
  const double memory = simulate(ps, c, 4).seconds;
  c.cacheBytes = 2 * working - 1;
  EXPECT_DOUBLE_EQ(simulate(ps, c, 4).seconds, memory);
  c.cacheBytes = 2 * working;
  EXPECT_NEAR(simulate(ps, c, 4).seconds, memory / 4, 1e-3 * memory);
  EXPECT_GT(memory, 0);
}

TEST(Simulator, FlowsOnOneNicShareIt) {
  // Two ranks of host 0 send to two ranks of host 1 at once through one NIC: twice as long as one.
  SimCluster c;
  c.hostOf = {0, 0, 1, 1};
  c.nic = {0, 1.0};
  c.reduceGbps = c.copyGbps = 1e6;
  auto pair = [](int r, bool both) {
    Schedule s;
    const std::uint64_t cnt = 1 << 20;
    if (r == 0 || (r == 1 && both)) s.add({StepKind::Send, r + 2, {Buf::Send, 0, cnt}, {}});
    if (r == 2 || (r == 3 && both)) s.add({StepKind::Recv, r - 2, {}, {Buf::Recv, 0, cnt}});
    return PreparedSchedule(s);
  };
  std::vector<PreparedSchedule> one, two;
  for (int r = 0; r < 4; ++r) {
    one.push_back(pair(r, false));
    two.push_back(pair(r, true));
  }
  const double t1 = simulate(one, c, 4).seconds, t2 = simulate(two, c, 4).seconds;
  EXPECT_NEAR(t2 / t1, 2.0, 0.01);
  c.nicsPerHost = 2;  // a NIC each: no sharing
  EXPECT_NEAR(simulate(two, c, 4).seconds / t1, 1.0, 0.01);
}

TEST(Simulator, StagedDeviceMessagesPayTheirCopiesOnBothSides) {
  // One 4 MiB message between hosts over a 1 GB/s NIC; staged at 0.5 GB/s it is copied out,
  // sent, and copied in: 4 + 8 + 8 ms instead of 4 (the copies of one message do not overlap).
  SimCluster c;
  c.hostOf = {0, 1};
  c.nic = {0, 1.0};
  c.reduceGbps = c.copyGbps = 1e6;
  const std::uint64_t cnt = 1 << 20;
  auto pair = [&](StepKind recv) {
    std::vector<PreparedSchedule> ps;
    Schedule a, b;
    a.add({StepKind::Send, 1, {Buf::Send, 0, cnt}, {}});
    b.add({recv, 0, {Buf::Recv, 0, cnt}, {Buf::Recv, 0, cnt}});
    ps.emplace_back(a);
    ps.emplace_back(b);
    return ps;
  };
  const double bytes = static_cast<double>(cnt) * 4;
  const double plain = simulate(pair(StepKind::Recv), c, 4).seconds;
  EXPECT_NEAR(plain, bytes / 1e9, 1e-6);
  c.stagingGbps = 0.5;
  EXPECT_NEAR(simulate(pair(StepKind::Recv), c, 4).seconds, bytes / 1e9 + 2 * bytes / 0.5e9, 1e-6);
  // A reduction that reads the pinned buffer runs at the slower of its rate and the staging's.
  c.reduceGbps = 0.25;
  EXPECT_NEAR(simulate(pair(StepKind::RecvReduce), c, 4).seconds, bytes / 1e9 + bytes / 0.5e9 + bytes / 0.25e9, 1e-6);
  // Inside a host nothing is staged (CUDA IPC), unless the host's ranks talk over TCP.
  c.hostOf = {0, 0};
  c.intra = {0, 1.0};
  c.reduceGbps = 1e6;
  EXPECT_NEAR(simulate(pair(StepKind::Recv), c, 4).seconds, bytes / 1e9, 1e-6);
  c.stagedInsideHost = true;
  EXPECT_NEAR(simulate(pair(StepKind::Recv), c, 4).seconds, bytes / 1e9 + 2 * bytes / 0.5e9, 1e-6);
}

TEST(Simulator, ShapedNicsLetABurstThroughAtPeakRate) {
  // One message from host 0 to host 1; the NIC's bucket holds 1 MB at 10 GB/s, then 1 GB/s.
  SimCluster c = oneRankPerHost(2);
  c.nic = {0, 1.0};
  c.nicBurstBytes = 1e6;
  c.nicPeakGbps = 10;
  auto oneMessage = [&](std::uint64_t bytes) {
    std::vector<PreparedSchedule> v;
    for (int r = 0; r < 2; ++r) {
      Schedule s;
      if (r == 0) s.add({StepKind::Send, 1, {Buf::Send, 0, bytes / 4}, {}});
      else s.add({StepKind::Recv, 0, {}, {Buf::Recv, 0, bytes / 4}});
      v.emplace_back(s);
    }
    return simulate(v, c, 4).seconds;
  };
  EXPECT_NEAR(oneMessage(800'000), 800e3 / 10e9, 1e-9) << "within the bucket: peak rate";
  EXPECT_NEAR(oneMessage(4'000'000), 1e6 / 10e9 + 3e6 / 1e9, 1e-9) << "the rest at the shaped rate";
  c.nicBurstBytes = 0;
  EXPECT_NEAR(oneMessage(800'000), 800e3 / 1e9, 1e-9) << "no bucket: the rate throughout";
}

// Back-to-back calls on a shaped link: the bucket empties over the first calls and does not
// refill between them, so a long loop runs at the shaped rate; calls of an unshaped link cost
// the same as a lone one.
TEST(Simulator, BackToBackCallsDrainTheTokenBucket) {
  SimCluster c = oneRankPerHost(2);
  c.nic = {0, 1.0};
  c.nicBurstBytes = 1e6;
  c.nicPeakGbps = 10;
  std::vector<PreparedSchedule> v;
  for (int r = 0; r < 2; ++r) {
    Schedule s;
    if (r == 0) s.add({StepKind::Send, 1, {Buf::Send, 0, 500'000 / 4}, {}});
    else s.add({StepKind::Recv, 0, {}, {Buf::Recv, 0, 500'000 / 4}});
    v.emplace_back(s);
  }
  const double lone = simulate(v, c, 4).seconds;
  EXPECT_NEAR(lone, 500e3 / 10e9, 1e-9) << "a lone call fits the bucket";
  // Calls 1 and 2 take the 1 MB bucket at the peak; from the third on, the rate alone.
  EXPECT_NEAR(simulate(v, c, 4, 2).seconds, 500e3 / 10e9, 1e-9);
  const double looped = simulate(v, c, 4, 50, 10).seconds;
  EXPECT_NEAR(looped, 500e3 / 1e9, 0.02 * 500e3 / 1e9) << "a long loop runs at the shaped rate";
  const double shortLoop = simulate(v, c, 4, 4).seconds;
  EXPECT_GT(shortLoop, lone);
  EXPECT_LT(shortLoop, looped) << "a short loop still gets part of the bucket";
  c.nicBurstBytes = 0;
  EXPECT_NEAR(simulate(v, c, 4, 20, 3).seconds, simulate(v, c, 4).seconds, 1e-12) << "nothing to drain";
  EXPECT_NE(simulate(v, c, 4, 0).error.find("calls"), std::string::npos);
  EXPECT_NE(simulate(v, c, 4, 1, -1).error.find("warmup"), std::string::npos);
}

TEST(Simulator, ReportsDeadlocksAndMismatches) {
  SimCluster c = oneRankPerHost(2);
  std::vector<PreparedSchedule> dead;
  for (int r = 0; r < 2; ++r) {
    Schedule s;
    std::uint32_t a = s.add({StepKind::Recv, 1 - r, {}, {Buf::Recv, 0, 4}});
    s.add({StepKind::Send, 1 - r, {Buf::Send, 0, 4}, {}}, {a});
    dead.emplace_back(s);
  }
  EXPECT_NE(simulate(dead, c, 4).error.find("deadlock"), std::string::npos);
  std::vector<PreparedSchedule> mismatch;
  for (int r = 0; r < 2; ++r) {
    Schedule s;
    if (r == 0) s.add({StepKind::Send, 1, {Buf::Send, 0, 4}, {}});
    else s.add({StepKind::Recv, 0, {}, {Buf::Recv, 0, 8}});
    mismatch.emplace_back(s);
  }
  EXPECT_NE(simulate(mismatch, c, 4).error.find("expected"), std::string::npos);
}

}  // namespace
}  // namespace kumi
