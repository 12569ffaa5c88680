// The machine model as loaded from hwloc: the recorded fixtures (tests/topology/fixtures, written
// by make_fixture.py), synthetic topologies, and this machine.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/bytes.hpp"
#include "topology/cpu_list.hpp"
#include "topology/json_writer.hpp"
#include "topology/machine.hpp"
#include "topology/machine_loader.hpp"
#include "topology/report.hpp"

namespace {

using namespace kumi::topo;
using kumi::test::errorOf;

std::string fixture(const char* name) { return std::string(KUMI_TOPOLOGY_FIXTURES) + "/" + name; }

const Machine& twoSocket() {
  static const Machine m = loadMachineFromXml(fixture("two-socket-8gpu-4nic.xml"));
  return m;
}

std::vector<std::string> closenessNames(const Gpu& gpu) {
  std::vector<std::string> out;
  for (const Link& l : gpu.nics) out.emplace_back(closenessName(l.level));
  return out;
}

TEST(CpuList, FormatsRangesLikeSysfs) {
  EXPECT_EQ(formatCpuList({}), "");
  EXPECT_EQ(formatCpuList({3}), "3");
  EXPECT_EQ(formatCpuList({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
}

TEST(CpuList, ParsesWhatItFormats) {
  EXPECT_EQ(parseCpuList("0-2,5, 7-8"), (CpuList{0, 1, 2, 5, 7, 8}));
  EXPECT_EQ(parseCpuList("4,1,1"), (CpuList{1, 4}));
  EXPECT_EQ(parseCpuList(""), CpuList{});
  EXPECT_NE(errorOf([] { parseCpuList("3-1"); }).find("backwards"), std::string::npos);
  EXPECT_NE(errorOf([] { parseCpuList("a,b"); }).find("'a,b' is not a CPU list"), std::string::npos);
}

TEST(TwoSocketFixture, CountsPackagesNumaCoresAndPus) {
  const Machine& m = twoSocket();
  EXPECT_EQ(m.hostName, "fixture-2s-8gpu");
  EXPECT_EQ(m.source, "xml:" + fixture("two-socket-8gpu-4nic.xml"));
  ASSERT_EQ(m.packages.size(), 2u);
  ASSERT_EQ(m.numaNodes.size(), 2u);
  EXPECT_EQ(m.cores.size(), 48u);
  EXPECT_EQ(m.puCount, 96);
  // Linux numbers the second hyperthread of every core after all first threads.
  EXPECT_EQ(formatCpuList(m.numaNodes[0].cpus), "0-23,48-71");
  EXPECT_EQ(formatCpuList(m.numaNodes[1].cpus), "24-47,72-95");
  EXPECT_EQ(m.numaNodes[1].osIndex, 1);
  EXPECT_EQ(m.numaNodes[0].memoryBytes, 512ull << 30);
  EXPECT_EQ(coresOfNumaNode(m, 0).size(), 24u);
  EXPECT_EQ(coresOfNumaNode(m, 1).size(), 24u);
  EXPECT_EQ(m.cores[0].pus, (CpuList{0, 48}));
  EXPECT_EQ(m.cores[24].pus, (CpuList{24, 72}));
  EXPECT_EQ(m.cores[24].package, 1);
  EXPECT_EQ(m.cores[24].numaNode, 1);
}

TEST(TwoSocketFixture, GroupsCachesByLevelKindAndSize) {
  const auto& c = twoSocket().caches;
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].level, 3);
  EXPECT_EQ(c[0].sizeBytes, 105ull << 20);
  EXPECT_EQ(c[0].count, 2);
  EXPECT_EQ(c[1].level, 2);
  EXPECT_EQ(c[1].count, 48);
  EXPECT_EQ(c[2].level, 1);
  EXPECT_EQ(c[2].kind, 'd');
  EXPECT_EQ(c[3].level, 1);
  EXPECT_EQ(c[3].kind, 'i');
  EXPECT_EQ(c[3].sizeBytes, 32u << 10);
}

TEST(TwoSocketFixture, ListsPciDevicesButNotBridges) {
  const Machine& m = twoSocket();
  // 8 GPUs, 4 NICs, the NVMe drive and the BMC's VGA controller.
  ASSERT_EQ(m.pciDevices.size(), 14u);
  EXPECT_TRUE(std::is_sorted(m.pciDevices.begin(), m.pciDevices.end(),
                             [](const PciDevice& a, const PciDevice& b) { return a.busId < b.busId; }));
  const PciDevice& first = m.pciDevices.front();
  EXPECT_EQ(first.busId, "0000:03:00.0");
  EXPECT_EQ(first.classId, 0x0302);
  EXPECT_EQ(first.vendorId, 0x10de);
  EXPECT_EQ(first.deviceId, 0x2330);
  EXPECT_EQ(first.vendorName, "NVIDIA Corporation");
  EXPECT_EQ(first.name, "GH100 [H100 SXM5 80GB]");
}

TEST(TwoSocketFixture, FindsEightGpusButNotTheBmcDisplay) {
  const Machine& m = twoSocket();
  ASSERT_EQ(m.gpus.size(), 8u);
  const char* bus[] = {"03", "04", "12", "13", "83", "84", "c3", "c4"};
  for (int g = 0; g < 8; ++g) {
    EXPECT_EQ(m.gpus[g].busId, std::string("0000:") + bus[g] + ":00.0") << "GPU " << g;
    EXPECT_EQ(m.gpus[g].vendorId, 0x10de);
    EXPECT_EQ(m.gpus[g].numaNode, g < 4 ? 0 : 1) << "GPU " << g;
  }
  for (const Gpu& g : m.gpus) EXPECT_NE(g.busId, "0000:21:00.0");  // ASPEED VGA with a DRM card0
}

TEST(TwoSocketFixture, ClosestCoresOfEachGpuAreItsSocket) {
  const Machine& m = twoSocket();
  for (int g = 0; g < 8; ++g)
    EXPECT_EQ(m.gpus[g].closeCpus, m.packages[g < 4 ? 0 : 1].cpus) << "GPU " << g;
}

TEST(TwoSocketFixture, FindsFourNicsNamedByTheirRdmaDevice) {
  const Machine& m = twoSocket();
  ASSERT_EQ(m.nics.size(), 4u);
  const char* bus[] = {"05", "14", "85", "c5"};
  for (int i = 0; i < 4; ++i) {
    const Nic& n = m.nics[i];
    EXPECT_EQ(n.name, "mlx5_" + std::to_string(i));
    EXPECT_EQ(n.busId, std::string("0000:") + bus[i] + ":00.0");
    EXPECT_EQ(n.vendorId, 0x15b3);
    EXPECT_TRUE(n.rdma);
    EXPECT_EQ(n.numaNode, i < 2 ? 0 : 1);
    EXPECT_EQ(n.closeCpus, m.packages[i < 2 ? 0 : 1].cpus);
    ASSERT_EQ(n.osDevices.size(), 2u);
    EXPECT_EQ(n.osDevices[0].name, "mlx5_" + std::to_string(i));
    EXPECT_TRUE(n.osDevices[0].rdma);
    EXPECT_EQ(n.osDevices[1].name, "eth" + std::to_string(i + 2));
    EXPECT_FALSE(n.osDevices[1].rdma);
  }
}

TEST(TwoSocketFixture, NearestNicOfEachGpuIsTheOneOnItsSwitch) {
  const Machine& m = twoSocket();
  for (int g = 0; g < 8; ++g) {
    EXPECT_EQ(m.gpus[g].nearestNic, g / 2) << "GPU " << g;
    EXPECT_EQ(m.nics[m.gpus[g].nearestNic].name, "mlx5_" + std::to_string(g / 2));
    EXPECT_EQ(m.gpus[g].nics[g / 2].level, Closeness::PciSwitch);
  }
}

TEST(TwoSocketFixture, ClosenessLevelsFollowTheTree) {
  const Machine& m = twoSocket();
  using V = std::vector<std::string>;
  // Package 0: both switches under one host bridge. Package 1: one host bridge per switch.
  EXPECT_EQ(closenessNames(m.gpus[0]), (V{"pci_switch", "host_bridge", "machine", "machine"}));
  EXPECT_EQ(closenessNames(m.gpus[3]), (V{"host_bridge", "pci_switch", "machine", "machine"}));
  EXPECT_EQ(closenessNames(m.gpus[4]), (V{"machine", "machine", "pci_switch", "numa_node"}));
  EXPECT_EQ(closenessNames(m.gpus[7]), (V{"machine", "machine", "numa_node", "pci_switch"}));
}

TEST(TwoSocketFixture, RanksNicsByClosenessThenOrder) {
  const Machine& m = twoSocket();
  using V = std::vector<int>;
  EXPECT_EQ(nicsByCloseness(m, 0), (V{0, 1, 2, 3}));
  EXPECT_EQ(nicsByCloseness(m, 2), (V{1, 0, 2, 3}));
  EXPECT_EQ(nicsByCloseness(m, 5), (V{2, 3, 0, 1}));  // the two "machine" NICs keep NIC order
  EXPECT_EQ(nicsByCloseness(m, 6), (V{3, 2, 0, 1}));
  EXPECT_NE(errorOf([&] { nicsByCloseness(m, 8); }).find("GPU 8 does not exist"), std::string::npos);
}

TEST(Closeness, TiesAreBrokenByNicOrderAndDepthWithinALevel) {
  Machine m;
  m.nics.resize(3);
  Gpu gpu;
  gpu.nics = {{Closeness::Machine, 0}, {Closeness::HostBridge, 2}, {Closeness::HostBridge, 2}};
  m.gpus.push_back(gpu);
  rankNics(m);
  EXPECT_EQ(m.gpus[0].nearestNic, 1);
  // A deeper common ancestor at the same level is closer (a nested switch).
  m.gpus[0].nics = {{Closeness::PciSwitch, 3}, {Closeness::PciSwitch, 5}, {Closeness::Machine, 0}};
  rankNics(m);
  EXPECT_EQ(m.gpus[0].nearestNic, 1);
  EXPECT_EQ(nicsByCloseness(m, 0), (std::vector<int>{1, 0, 2}));
}

TEST(SubNumaFixture, SeparatesPackageFromNumaCloseness) {
  Machine m = loadMachineFromXml(fixture("snc2-2gpu-1nic.xml"));
  ASSERT_EQ(m.packages.size(), 1u);
  ASSERT_EQ(m.numaNodes.size(), 2u);
  EXPECT_EQ(m.cores.size(), 16u);
  ASSERT_EQ(m.gpus.size(), 2u);
  ASSERT_EQ(m.nics.size(), 1u);
  EXPECT_EQ(m.gpus[0].numaNode, 0);
  EXPECT_EQ(formatCpuList(m.gpus[0].closeCpus), "0-7");
  EXPECT_EQ(m.nics[0].numaNode, 1);
  EXPECT_EQ(formatCpuList(m.nics[0].closeCpus), "8-15");
  // GPU1 hangs off the package: local to no single NUMA node, close to all its CPUs.
  EXPECT_EQ(m.gpus[1].numaNode, -1);
  EXPECT_EQ(formatCpuList(m.gpus[1].closeCpus), "0-15");
  EXPECT_EQ(m.gpus[0].nics[0].level, Closeness::Package);
  EXPECT_EQ(m.gpus[1].nics[0].level, Closeness::Package);
  EXPECT_EQ(m.gpus[0].nearestNic, 0);
}

TEST(Synthetic, HasCpusButNoIo) {
  Machine m = loadMachineFromSynthetic("pack:2 numa:1 core:4 pu:2");
  EXPECT_EQ(m.source, "synthetic:pack:2 numa:1 core:4 pu:2");
  EXPECT_EQ(m.packages.size(), 2u);
  EXPECT_EQ(m.numaNodes.size(), 2u);
  EXPECT_EQ(m.cores.size(), 8u);
  EXPECT_EQ(m.puCount, 16);
  EXPECT_TRUE(m.pciDevices.empty());
  EXPECT_TRUE(m.gpus.empty());
  EXPECT_TRUE(m.nics.empty());
  EXPECT_EQ(formatCpuList(m.numaNodes[1].cpus), "8-15");
}

TEST(Synthetic, PusWithoutCoresCountAsCores) {
  Machine m = loadMachineFromSynthetic("pack:1 pu:3");
  EXPECT_EQ(m.cores.size(), 3u);
  EXPECT_EQ(m.cores[2].pus, CpuList{2});
}

TEST(Loaders, BadInputNamesWhatWasWrong) {
  std::string missing = errorOf([] { loadMachineFromXml("/nonexistent/topo.xml"); });
  EXPECT_NE(missing.find("cannot open hwloc XML file '/nonexistent/topo.xml'"), std::string::npos) << missing;
  std::string notXml = errorOf([] { loadMachineFromXml(KUMI_TOPOLOGY_FIXTURES "/../test_topology.cpp"); });
  EXPECT_NE(notXml.find("is not a valid hwloc XML topology"), std::string::npos) << notXml;
  std::string synth = errorOf([] { loadMachineFromSynthetic("bogus:2"); });
  EXPECT_NE(synth.find("'bogus:2' is not an hwloc synthetic topology"), std::string::npos) << synth;
}

TEST(LocalMachine, LoadsWithoutThrowing) {
  Machine m;
  ASSERT_NO_THROW(m = loadLocalMachine());
  EXPECT_EQ(m.source, "this machine");
  EXPECT_GE(m.puCount, 1);
  EXPECT_FALSE(m.cores.empty());
  ASSERT_FALSE(m.numaNodes.empty());
  int pus = 0;
  for (const Core& c : m.cores) {
    pus += static_cast<int>(c.pus.size());
    EXPECT_NE(c.numaNode, -1);
  }
  EXPECT_EQ(pus, m.puCount);
  for (std::size_t g = 0; g < m.gpus.size(); ++g) EXPECT_EQ(m.gpus[g].nics.size(), m.nics.size());
  EXPECT_NE(formatText(m).find("Machine: "), std::string::npos);
}

TEST(Report, TextShowsTheGpuToNicTable) {
  std::string text = formatText(twoSocket());
  EXPECT_NE(text.find("2 packages, 2 NUMA nodes, 48 cores, 96 PUs, 1 TiB"), std::string::npos) << text;
  EXPECT_NE(text.find("NUMA node 1  512 GiB, 24 cores, cpus 24-47,72-95"), std::string::npos) << text;
  EXPECT_NE(text.find("L3 105 MiB x2, L2 2 MiB x48, L1d 48 KiB x48, L1i 32 KiB x48"), std::string::npos) << text;
  EXPECT_NE(text.find("GPUs: 8"), std::string::npos);
  EXPECT_NE(text.find("7    0000:c4:00.0  1     mlx5_3       pci_switch  24-47,72-95"), std::string::npos) << text;
  EXPECT_NE(text.find("NICs: 4"), std::string::npos);
  EXPECT_NE(text.find("mlx5_0,eth2"), std::string::npos);
}

TEST(Report, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(kumi::formatBytes(0), "0 B");
  EXPECT_EQ(kumi::formatBytes(48 << 10), "48 KiB");
  EXPECT_EQ(kumi::formatBytes(1536ull << 20), "1.5 GiB");
}

TEST(JsonWriter, EscapesAndSeparates) {
  JsonWriter j;
  j.beginObject().field("a\"b", "x\\y\n\x01").field("n", -3).field("t", true);
  j.key("e").beginArray().endArray();
  j.key("l").beginArray().value(1).null().endArray().endObject();
  EXPECT_EQ(j.str(),
            "{\n  \"a\\\"b\": \"x\\\\y\\n\\u0001\",\n  \"n\": -3,\n  \"t\": true,\n  \"e\": [],\n"
            "  \"l\": [\n    1,\n    null\n  ]\n}\n");
}

TEST(Report, JsonNamesNearestNicPerGpu) {
  std::string json = formatJson(twoSocket());
  EXPECT_NE(json.find("\"nearest_nic_name\": \"mlx5_3\""), std::string::npos);
  EXPECT_NE(json.find("\"class_id\": \"0x0302\""), std::string::npos);
  EXPECT_EQ(json.back(), '\n');
}

}  // namespace
