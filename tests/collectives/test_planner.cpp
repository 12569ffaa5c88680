// The cost-model planner and the link-model format it reads (KUMI_TUNING_FILE, kumi-sim).
#include <gtest/gtest.h>

#include <algorithm>

#include "collectives/cost_planner.hpp"
#include "collectives/link_model.hpp"
#include "core/error.hpp"

namespace kumi {
namespace {

std::vector<int> hostsOf(int nodes, int perNode) {
  std::vector<int> h;
  for (int r = 0; r < nodes * perNode; ++r) h.push_back(r / perNode);
  return h;
}

// The virtual cluster's links: shared memory inside a node, 1 Gbit/s TCP between nodes.
LinkModel vcluster() {
  return parseLinkModel(
      "intra_gbps = 8\nintra_latency_us = 0.3\nnic_gbps = 0.118\nnic_latency_us = 60\nnic_overhead_us = 5\n"
      "reduce_gbps = 8\ncopy_gbps = 10\n",
      "test");
}

Planner plannerFor(int nodes, int perNode, const std::string& algo = "", const LinkModel& m = vcluster()) {
  return Planner(clusterFor(m, hostsOf(nodes, perNode), true), AlgorithmFilter(algo), 0);
}

std::string errorOf(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Planner, ChoosesTheCheapestPredictedCandidate) {
  Planner p = plannerFor(2, 2);
  for (std::uint64_t bytes : {std::uint64_t{8}, std::uint64_t{64} << 10, std::uint64_t{16} << 20}) {
    const std::uint64_t count = bytes / 4;
    const Plan& chosen = p.plan(Collective::AllReduce, count, 4);
    double best = 1e30;
    for (Algorithm a : p.candidates(Collective::AllReduce))
      for (int shift : {-1, 0, 1}) {
        const auto t = p.predict(Collective::AllReduce, a, count, 4, shift);
        ASSERT_TRUE(t.has_value());
        if (std::min(p.slice({a, shift, 0}, Collective::AllReduce, count, 4), count) * 4 >= 4096 || shift == 0)
          best = std::min(best, *t);
      }
    // The cheapest, or one listed earlier that is predicted within 3% of it (near-ties go to
    // the simpler schedule).
    EXPECT_GE(chosen.predicted, best) << bytes << " bytes: " << algorithmName(chosen.algo);
    EXPECT_LE(chosen.predicted * 0.97, best) << bytes << " bytes: " << algorithmName(chosen.algo);
  }
}

TEST(Planner, NodeAwareOnSeveralHostsWithSeveralRanks) {
  Planner p = plannerFor(2, 2);
  EXPECT_EQ(p.plan(Collective::AllReduce, 4 << 20, 4).algo, Algorithm::Hierarchical);
  EXPECT_EQ(p.plan(Collective::AllGather, 1 << 20, 4).algo, Algorithm::Hierarchical);
  // Small messages: latency rounds, not the ring's 2(n-1) hops.
  EXPECT_NE(p.plan(Collective::AllReduce, 2, 4).algo, Algorithm::Ring);
  // A flat world of four hosts has nothing hierarchical to gain.
  Planner flat = plannerFor(4, 1);
  EXPECT_NE(flat.plan(Collective::AllReduce, 4 << 20, 4).algo, Algorithm::Hierarchical);
}

TEST(Planner, CachesOneDecisionPerSizeClass) {
  Planner p = plannerFor(2, 2);
  const Plan* a = &p.plan(Collective::AllReduce, 1000, 4);
  EXPECT_EQ(a, &p.plan(Collective::AllReduce, 1020, 4)) << "same power-of-two class";
  EXPECT_NE(a, &p.plan(Collective::AllReduce, 4000, 4));
  EXPECT_NE(a, &p.plan(Collective::Broadcast, 1000, 4));
}

TEST(Planner, EveryCollectiveIsPlanned) {
  Planner p = plannerFor(2, 3);
  for (Collective c : {Collective::AllReduce, Collective::ReduceScatter, Collective::AllGather, Collective::Broadcast,
                       Collective::Reduce, Collective::Barrier, Collective::AllToAll})
    for (std::uint64_t count : {std::uint64_t{1}, std::uint64_t{100000}}) {
      const Plan& plan = p.plan(c, count, 4);
      const auto& own = algorithmsFor(c);
      EXPECT_NE(std::find(own.begin(), own.end(), plan.algo), own.end()) << collectiveName(c);
      EXPECT_GE(p.slice(plan, c, count, 4), 1u);
    }
  // Uneven hosts: the hierarchical allgather cannot serve and is never a candidate.
  Planner uneven(clusterFor(vcluster(), {0, 0, 1}, true), AlgorithmFilter(), 0);
  const auto& ag = uneven.candidates(Collective::AllGather);
  EXPECT_EQ(std::find(ag.begin(), ag.end(), Algorithm::Hierarchical), ag.end());
}

TEST(Planner, KumiAlgoRestrictsFallsBackOrFails) {
  EXPECT_EQ(plannerFor(2, 2, "allreduce:ring").plan(Collective::AllReduce, 4 << 20, 4).algo, Algorithm::Ring);
  EXPECT_NE(plannerFor(2, 2, "^hierarchical").plan(Collective::AllReduce, 4 << 20, 4).algo, Algorithm::Hierarchical);
  EXPECT_EQ(plannerFor(2, 2, "allreduce:tree").plan(Collective::AllReduce, 8, 4).algo, Algorithm::Tree);
  EXPECT_EQ(plannerFor(2, 2, "alltoall:pairwise").plan(Collective::AllToAll, 1 << 16, 4).algo, Algorithm::Pairwise);
  EXPECT_NE(errorOf([] { plannerFor(2, 2, "alltoall:^pairwise"); }).find("leaves alltoall no algorithm"), std::string::npos);
  const std::vector<int> uneven = {0, 0, 1};
  // Forcing what cannot serve: the planner falls back (and warns) rather than failing.
  Planner forced(clusterFor(vcluster(), uneven, true), AlgorithmFilter("allgather:hierarchical"), 0);
  EXPECT_NE(forced.plan(Collective::AllGather, 1 << 20, 4).algo, Algorithm::Hierarchical);
  // Excluding every alternative leaves nothing: a clear error at once.
  const std::string err = errorOf([&] {
    Planner(clusterFor(vcluster(), uneven, true), AlgorithmFilter("allgather:^ring,recursive_doubling"), 0);
  });
  EXPECT_NE(err.find("leaves allgather no algorithm that can serve"), std::string::npos) << err;
  EXPECT_NE(err.find("hierarchical allgather needs"), std::string::npos) << err;
}

TEST(Planner, ChunkSizeFixedByKumiChunkSize) {
  Planner p(clusterFor(vcluster(), hostsOf(4, 1), true), AlgorithmFilter("allreduce:ring"), 64 << 10);
  const Plan& plan = p.plan(Collective::AllReduce, 16 << 20, 4);
  EXPECT_EQ(plan.sliceShift, 0);
  EXPECT_EQ(p.slice(plan, Collective::AllReduce, 16 << 20, 4), (64u << 10) / 4);
}

TEST(Planner, WorldsTooLargeToSimulateUseTheRuleOfThumb) {
  LinkModel m = vcluster();
  Planner p(clusterFor(m, hostsOf(128, 8), true), AlgorithmFilter(), 0);
  EXPECT_FALSE(p.predict(Collective::AllReduce, Algorithm::Ring, 64 << 20, 4, 0).has_value());
  EXPECT_EQ(p.plan(Collective::AllReduce, 64 << 20, 4).algo, Algorithm::Hierarchical);
  EXPECT_EQ(p.plan(Collective::AllReduce, 64 << 20, 4).predicted, 0);
}

TEST(LinkModel, RoundTripsThroughText) {
  LinkModel m = vcluster();
  m.nicsPerHost = 4;
  m.oversubscription = 2;
  m.loopback = {13.25, 2.0625, 3.1};
  m.cacheBytes = 32 << 20;
  m.cachedCopyGbps = 41.5;
  m.name = "x";
  EXPECT_EQ(parseLinkModel(formatLinkModel(m), "again"), m);
  // The cluster a communicator plans against divides the NIC among the oversubscribed fabric.
  const SimCluster c = clusterFor(m, {0, 1}, false);
  EXPECT_DOUBLE_EQ(c.nic.gbps, 0.059);
  EXPECT_EQ(c.intra, m.loopback);
  EXPECT_EQ(c.nicsPerHost, 4);
  EXPECT_DOUBLE_EQ(c.cacheBytes, 32 << 20);
  EXPECT_DOUBLE_EQ(c.cachedCopyGbps, 41.5);
}

TEST(LinkModel, DeviceCallsPlanAgainstTheDeviceSection) {
  LinkModel m = vcluster();
  m.deviceIntra = {3, 300, 1.5};
  m.deviceReduceGbps = 900;
  m.deviceCopyGbps = 1100;
  m.deviceStagingGbps = 24;
  m.gpusPerHost = 2;
  m.coresPerHost = 16;
  m.cacheBytes = 32 << 20;
  EXPECT_EQ(parseLinkModel(formatLinkModel(m), "again"), m);
  const SimCluster host = clusterFor(m, {0, 0, 1, 1}, true), device = clusterFor(m, {0, 0, 1, 1}, true, true);
  EXPECT_EQ(host.intra, m.intra);
  EXPECT_EQ(host.stagingGbps, 0);
  EXPECT_EQ(host.coresPerHost, 16);
  EXPECT_EQ(device.intra, m.deviceIntra);
  EXPECT_DOUBLE_EQ(device.reduceGbps, 900);
  EXPECT_DOUBLE_EQ(device.copyGbps, 1100);
  EXPECT_DOUBLE_EQ(device.stagingGbps, 24);
  EXPECT_EQ(device.coresPerHost, 2);  // ranks beyond the GPUs share them
  EXPECT_EQ(device.cacheBytes, 0);    // the host's cache holds no device buffers
  EXPECT_FALSE(device.stagedInsideHost);
  EXPECT_EQ(device.nic, host.nic);
  // Over loopback TCP device buffers are staged inside a host too.
  const SimCluster tcp = clusterFor(m, {0, 0}, false, true);
  EXPECT_EQ(tcp.intra, m.loopback);
  EXPECT_TRUE(tcp.stagedInsideHost);
}

TEST(LinkModel, BadTokensAreNamed) {
  auto err = [](const std::string& text) { return errorOf([&] { parseLinkModel(text, "tune.conf"); }); };
  EXPECT_NE(err("nic_gbps = 1\nbogus_key = 3\n").find("tune.conf:2: unknown key 'bogus_key'"), std::string::npos);
  EXPECT_NE(err("nic_gbps = fast").find("nic_gbps must be a positive number, got 'fast'"), std::string::npos);
  EXPECT_NE(err("nic_gbps = 0").find("got '0'"), std::string::npos);
  EXPECT_NE(err("nic_gbps = -1").find("got '-1'"), std::string::npos);
  EXPECT_NE(err("nic_gbps = inf").find("got 'inf'"), std::string::npos);
  EXPECT_NE(err("nic_gbps 1").find("tune.conf:1: expected 'key = value', got 'nic_gbps 1'"), std::string::npos);
  EXPECT_NE(err("nics_per_node = 1.5").find("whole number"), std::string::npos);
  EXPECT_EQ(err("nic_overhead_us = 0  # zero is fine for an overhead\n"), "");
  EXPECT_EQ(err("cache_bytes = 0  # and for the cache: not modelled\n"), "");
  EXPECT_NE(err("device_intra_gbps = 0").find("device_intra_gbps must be a positive number"), std::string::npos);
  EXPECT_EQ(err("device_intra_overhead_us = 0\n"), "");
  EXPECT_NE(err("gpus_per_node = 1.5").find("gpus_per_node must be a whole number"), std::string::npos);
  EXPECT_NE(err("cached_copy_gbps = 0").find("cached_copy_gbps must be a positive number"), std::string::npos);
  EXPECT_NE(errorOf([] { loadLinkModel("/nonexistent/tuning"); }).find("cannot read '/nonexistent/tuning'"),
            std::string::npos);
}

}  // namespace
}  // namespace kumi
