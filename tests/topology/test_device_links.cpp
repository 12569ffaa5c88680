// Device calls planned for the GPU links of fixture machines (an HGX H100 board on NVSwitches,
// NVLink-bridged pairs, a PCIe-only server): the figures the communicator puts in the link
// model, and the choices the planner makes with them, beside those it makes for host buffers.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "collectives/cost_planner.hpp"
#include "comm/device_links.hpp"
#include "topology/machine_loader.hpp"

namespace kumi {
namespace {

std::string fixture(const char* name) { return std::string(KUMI_TOPOLOGY_FIXTURES) + "/" + name; }

LinkModel fromFixture(const char* name) {
  LinkModel m;
  putDeviceLinks(topo::loadMachineFromXml(fixture(name)), m);
  return m;
}

std::vector<int> hostsOf(int nodes, int perNode) {
  std::vector<int> h;
  for (int r = 0; r < nodes * perNode; ++r) h.push_back(r / perNode);
  return h;
}

Planner devicePlanner(const LinkModel& m, int nodes, int perNode, const std::string& algo = "") {
  return Planner(clusterFor(m, hostsOf(nodes, perNode), true, true), AlgorithmFilter(algo), 0);
}
Planner hostPlanner(const LinkModel& m, int nodes, int perNode) {
  return Planner(clusterFor(m, hostsOf(nodes, perNode), true), AlgorithmFilter(), 0);
}

TEST(DeviceLinks, HgxBoardIsPlannedAtNvSwitchSpeed) {
  const LinkModel m = fromFixture("hgx-8gpu-nvswitch-4nic.xml");
  EXPECT_DOUBLE_EQ(m.deviceIntra.gbps, kDeviceLinkEfficiency * 450);
  EXPECT_NEAR(m.deviceStagingGbps, kDeviceLinkEfficiency * 31.5, 0.1);  // the fixture's PCIe Gen4 x16
  EXPECT_EQ(m.gpusPerHost, 8);
  // The host section is untouched: host buffers still move by shared memory.
  EXPECT_EQ(m.intra, LinkModel{}.intra);
}

TEST(DeviceLinks, BridgedPairsArePlannedAtTheNarrowestLinkARingCrosses) {
  const LinkModel m = fromFixture("4gpu-nvlink-pairs.xml");
  EXPECT_NEAR(m.deviceIntra.gbps, kDeviceLinkEfficiency * 31.5, 0.1);  // PCIe between the pairs
  EXPECT_EQ(m.gpusPerHost, 4);
}

TEST(DeviceLinks, AMachineWithoutGpusOrATuningFileKeepsItsFigures) {
  LinkModel none;
  topo::Machine bare;
  putDeviceLinks(bare, none);
  EXPECT_EQ(none, LinkModel{});
  LinkModel tuned;
  tuned.deviceIntra.gbps = 123;
  tuned.deviceStagingGbps = 7;
  tuned.gpusPerHost = 2;
  putDeviceLinks(topo::loadMachineFromXml(fixture("hgx-8gpu-nvswitch-4nic.xml")), tuned);
  EXPECT_DOUBLE_EQ(tuned.deviceIntra.gbps, 123);
  EXPECT_DOUBLE_EQ(tuned.deviceStagingGbps, 7);
  EXPECT_EQ(tuned.gpusPerHost, 2);
}

Algorithm deviceChoice(const char* name, int nodes, std::uint64_t bytes) {
  const LinkModel m = fromFixture(name);
  return devicePlanner(m, nodes, m.gpusPerHost).plan(Collective::AllReduce, bytes / 2, 2).algo;  // bfloat16
}

// The largest allreduce (bfloat16, one node) for which the planner still takes recursive
// doubling, the latency-bound choice that moves the whole message log2(n) times.
std::uint64_t latencyBoundUpTo(const char* name) {
  const LinkModel m = fromFixture(name);
  Planner p = devicePlanner(m, 1, m.gpusPerHost);
  std::uint64_t last = 0;
  for (std::uint64_t bytes = 8; bytes <= (256u << 20); bytes *= 2)
    if (p.plan(Collective::AllReduce, bytes / 2, 2).algo == Algorithm::RecursiveDoubling) last = bytes;
  return last;
}

TEST(DeviceLinks, NvLinkMovesTheRingsCrossoverToLargerMessagesThanPcie) {
  // At NVSwitch speed the bytes are cheap and the per-message host-driven handshakes are not,
  // so the whole message sent log2(n) times wins up to far larger sizes than at PCIe speed (the
  // same board without NVLink; pairs bridged with PCIe between them). Beyond it Rabenseifner
  // takes over (log2(n) rounds too, but of halves), not the ring.
  const std::uint64_t nvswitch = latencyBoundUpTo("hgx-8gpu-nvswitch-4nic.xml");
  const std::uint64_t pcie = latencyBoundUpTo("two-socket-8gpu-4nic.xml");
  const std::uint64_t pairs = latencyBoundUpTo("4gpu-nvlink-pairs.xml");
  // (Four GPUs in NVLink pairs bridged by PCIe: in between.)
  EXPECT_GE(nvswitch, 1 << 20);
  EXPECT_GE(nvswitch, 8 * pcie) << "NVSwitch " << nvswitch << " B, PCIe " << pcie << " B";
  EXPECT_GE(nvswitch, 2 * pairs) << "NVSwitch " << nvswitch << " B, bridged pairs " << pairs << " B";
  EXPECT_GT(pairs, pcie) << "bridged pairs " << pairs << " B, PCIe " << pcie << " B";
  EXPECT_GT(pcie, 0u);  // small messages are latency-bound on any link
}

TEST(DeviceLinks, DeviceAndHostCallsOfOneCommunicatorArePlannedApart) {
  const LinkModel m = fromFixture("hgx-8gpu-nvswitch-4nic.xml");
  Planner device = devicePlanner(m, 1, 8), host = hostPlanner(m, 1, 8);
  const Plan d = device.plan(Collective::AllReduce, 1 << 19, 2), h = host.plan(Collective::AllReduce, 1 << 19, 2);
  EXPECT_EQ(d.algo, Algorithm::RecursiveDoubling) << algorithmName(d.algo);
  EXPECT_EQ(h.algo, Algorithm::Ring) << algorithmName(h.algo);  // shared memory at host copy speed
  EXPECT_LT(d.predicted * 3, h.predicted) << d.predicted << " " << h.predicted;
}

TEST(DeviceLinks, SeveralNodesTakeTheHierarchicalAllReduceOnEveryFixture) {
  for (const char* name :
       {"hgx-8gpu-nvswitch-4nic.xml", "4gpu-nvlink-pairs.xml", "two-socket-8gpu-4nic.xml", "snc2-2gpu-1nic.xml"})
    for (std::uint64_t bytes : {1ull << 20, 16ull << 20, 256ull << 20})
      EXPECT_EQ(deviceChoice(name, 2, bytes), Algorithm::Hierarchical) << name << ", " << bytes << " bytes";
}

TEST(DeviceLinks, ProcessesSharingOneGpuContendForIt) {
  // Four ranks on a host with one GPU (the lent H200): the GPU's copies are shared out, so a
  // call takes longer than on four GPUs with the same links.
  LinkModel one = fromFixture("hgx-8gpu-nvswitch-4nic.xml"), four = one;
  one.gpusPerHost = 1;
  four.gpusPerHost = 4;
  const double shared = *devicePlanner(one, 1, 4).predict(Collective::AllReduce, Algorithm::Ring, 64 << 20, 2, 0);
  const double own = *devicePlanner(four, 1, 4).predict(Collective::AllReduce, Algorithm::Ring, 64 << 20, 2, 0);
  EXPECT_GT(shared, 2 * own);
}

}  // namespace
}  // namespace kumi
