// GPU-to-GPU links: hwloc's NVLinkBandwidth matrix read from fixtures of an HGX H100 board
// (NVSwitches) and of NVLink-bridged pairs, the arithmetic on matrices as NVML yields them, and
// the NVML probe where there is no NVIDIA driver (this machine).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "topology/gpu_fabric.hpp"
#include "topology/machine.hpp"
#include "topology/machine_loader.hpp"
#include "topology/nvml_probe.hpp"
#include "topology/report.hpp"

namespace kumi::topo {
namespace {

std::string fixture(const char* name) { return std::string(KUMI_TOPOLOGY_FIXTURES) + "/" + name; }

TEST(GpuFabric, HgxBoardEveryPairThroughTheNvSwitchesAt450) {
  const Machine m = loadMachineFromXml(fixture("hgx-8gpu-nvswitch-4nic.xml"));
  ASSERT_EQ(m.gpus.size(), 8u);
  EXPECT_EQ(m.nvlinkSource, "hwloc NVLinkBandwidth");
  ASSERT_EQ(m.gpuPeers.size(), 8u);
  for (std::size_t a = 0; a < 8; ++a) {
    ASSERT_EQ(m.gpuPeers[a].size(), 8u);
    for (std::size_t b = 0; b < 8; ++b) {
      const GpuPeer& p = m.gpuPeers[a][b];
      if (a == b) {
        EXPECT_EQ(p.kind, GpuLinkKind::Self);
        continue;
      }
      EXPECT_EQ(p.kind, GpuLinkKind::NvSwitch) << a << "-" << b;
      EXPECT_DOUBLE_EQ(p.gbps, 450.0) << a << "-" << b;  // 18 links x 25 GB/s
      EXPECT_EQ(p.lanes, 0);
    }
  }
  // The PCIe relation stays known beside NVLink: same switch, across packages.
  EXPECT_EQ(m.gpuPeers[0][1].pci.level, Closeness::PciSwitch);
  EXPECT_EQ(m.gpuPeers[0][4].pci.level, Closeness::Machine);
  EXPECT_NEAR(m.gpus[0].pcieGBps, 31.5, 0.1);
  // The CUDA and NVML OS devices are the GPU's, not separate GPUs; the NVSwitches are no GPUs.
  EXPECT_EQ(m.gpus[0].osDevices, (std::vector<std::string>{"cuda0", "nvml0"}));
}

TEST(GpuFabric, BridgedPairsUseNvLinkAndPcieAcrossPairs) {
  const Machine m = loadMachineFromXml(fixture("4gpu-nvlink-pairs.xml"));
  ASSERT_EQ(m.gpus.size(), 4u);
  const GpuPeer& pair = m.gpuPeers[0][1];
  EXPECT_EQ(pair.kind, GpuLinkKind::NvLink);
  EXPECT_EQ(pair.lanes, 12);
  EXPECT_DOUBLE_EQ(pair.gbps, 300.0);
  EXPECT_EQ(m.gpuPeers[3][2].kind, GpuLinkKind::NvLink);
  const GpuPeer& across = m.gpuPeers[1][2];
  EXPECT_EQ(across.kind, GpuLinkKind::Pcie);
  EXPECT_NEAR(across.gbps, 31.5, 0.1);  // the narrower of the two GPUs' PCIe links
  EXPECT_EQ(across.pci.level, Closeness::NumaNode);
}

TEST(GpuFabric, WithoutNvLinkFactsEveryPairIsPcie) {
  const Machine m = loadMachineFromXml(fixture("two-socket-8gpu-4nic.xml"));
  EXPECT_TRUE(m.nvlinkSource.empty());
  for (std::size_t a = 0; a < m.gpus.size(); ++a)
    for (std::size_t b = 0; b < m.gpus.size(); ++b)
      EXPECT_EQ(m.gpuPeers[a][b].kind, a == b ? GpuLinkKind::Self : GpuLinkKind::Pcie);
}

// Two GPUs on PCIe, for the matrices below.
Machine twoGpus(double pcie0 = 31.5, double pcie1 = 15.75) {
  Machine m;
  for (const char* bus : {"0000:07:00.0", "0000:0a:00.0"}) {
    Gpu g;
    g.busId = bus;
    m.gpus.push_back(g);
  }
  m.gpus[0].pcieGBps = pcie0;
  m.gpus[1].pcieGBps = pcie1;
  return m;
}

TEST(GpuFabric, NvmlMatrixWithLaneCountsAndFifthGenerationLinks) {
  Machine m = twoGpus();
  NvLinkMatrix x;
  x.source = "NVML";
  // NVML's bus ids carry an 8-digit domain; a CPU's NVLink port (not a switch) is ignored.
  x.ends = {{"00000000:07:00.0", false}, {"00000000:0A:00.0", false}, {"00000000:40:00.0", false}};
  const std::uint64_t lane = nvlinkLaneMBps(5);
  x.mbps = {0, 18 * lane, 4 * lane, 18 * lane, 0, 0, 4 * lane, 0, 0};
  x.lanes = {0, 18, 4, 18, 0, 0, 4, 0, 0};
  setGpuPeers(m, {}, &x);
  EXPECT_EQ(m.nvlinkSource, "NVML");
  EXPECT_EQ(m.gpuPeers[0][1].kind, GpuLinkKind::NvLink);
  EXPECT_EQ(m.gpuPeers[0][1].lanes, 18);
  EXPECT_DOUBLE_EQ(m.gpuPeers[1][0].gbps, 900.0);
}

TEST(GpuFabric, SwitchBandwidthIsTheNarrowerGpusShare) {
  Machine m = twoGpus();
  NvLinkMatrix x;
  x.source = "test";
  x.ends = {{"0000:07:00.0", false}, {"0000:0a:00.0", false}, {"0000:d0:00.0", true}, {"0000:d1:00.0", true}};
  // GPU0 has 4 + 4 links into the two switch ports, GPU1 only 2 + 4 (a link down).
  const std::uint64_t l = nvlinkLaneMBps(4);
  x.mbps = {0, 0, 4 * l, 4 * l,  //
            0, 0, 2 * l, 4 * l,  //
            4 * l, 2 * l, 0, 0,  //
            4 * l, 4 * l, 0, 0};
  setGpuPeers(m, {}, &x);
  EXPECT_EQ(m.gpuPeers[0][1].kind, GpuLinkKind::NvSwitch);
  EXPECT_DOUBLE_EQ(m.gpuPeers[0][1].gbps, 150.0);
  EXPECT_DOUBLE_EQ(m.gpuPeers[1][0].gbps, 150.0);
}

TEST(GpuFabric, MalformedOrForeignMatricesLeavePcie) {
  Machine m = twoGpus();
  NvLinkMatrix wrongSize;
  wrongSize.ends = {{"0000:07:00.0", false}, {"0000:0a:00.0", false}};
  wrongSize.mbps = {0, 25000, 25000};  // 3 values for 2 x 2
  setGpuPeers(m, {}, &wrongSize);
  EXPECT_EQ(m.gpuPeers[0][1].kind, GpuLinkKind::Pcie);
  EXPECT_DOUBLE_EQ(m.gpuPeers[0][1].gbps, 15.75);  // the narrower PCIe link
  EXPECT_TRUE(m.nvlinkSource.empty());

  NvLinkMatrix otherMachine;  // GPUs this machine does not have
  otherMachine.source = "test";
  otherMachine.ends = {{"0000:99:00.0", false}, {"0000:9a:00.0", false}};
  otherMachine.mbps = {0, 25000, 25000, 0};
  setGpuPeers(m, {}, &otherMachine);
  EXPECT_EQ(m.gpuPeers[1][0].kind, GpuLinkKind::Pcie);
  EXPECT_TRUE(m.nvlinkSource.empty());
}

TEST(GpuFabric, BusIdsAndLaneSpeeds) {
  EXPECT_EQ(canonicalBusId("00000000:07:00.0"), "0000:07:00.0");
  EXPECT_EQ(canonicalBusId("0000:C4:1f.7"), "0000:c4:1f.7");
  EXPECT_EQ(canonicalBusId("07:00.0"), "");
  EXPECT_EQ(canonicalBusId("0000:07:20.0"), "");  // device numbers stop at 31
  EXPECT_EQ(nvlinkLaneMBps(1), 20000u);
  EXPECT_EQ(nvlinkLaneMBps(4), 25000u);
  EXPECT_EQ(nvlinkLaneMBps(5), 50000u);
  EXPECT_EQ(nvlinkLaneMBps(9), 0u);
}

TEST(GpuFabric, NvmlProbeSaysWhyWhenThereIsNoDriver) {
  Machine m = twoGpus();
  std::string why;
  const auto x = probeNvLinks(m, &why);
  if (x) {  // a machine with NVML: the GPUs come first, as given
    ASSERT_GE(x->ends.size(), 2u);
    EXPECT_EQ(x->ends[0].busId, "0000:07:00.0");
  } else {
    EXPECT_FALSE(why.empty());
  }
  Machine none;
  EXPECT_FALSE(probeNvLinks(none, &why));
  EXPECT_EQ(why, "no GPUs");
}

TEST(GpuFabric, ReportShowsTheLinkMatrixInTextAndJson) {
  const Machine m = loadMachineFromXml(fixture("4gpu-nvlink-pairs.xml"));
  const std::string text = formatText(m);
  EXPECT_NE(text.find("GPU links"), std::string::npos) << text;
  EXPECT_NE(text.find("NV12 300"), std::string::npos) << text;
  EXPECT_NE(text.find("NODE 31.51"), std::string::npos) << text;
  const std::string json = formatJson(m);
  EXPECT_NE(json.find("\"nvlink_source\": \"hwloc NVLinkBandwidth\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"kind\": \"nvlink\",\n          \"gbps\": 300,\n          \"nvlinks\": 12,"), std::string::npos)
      << json;
}

}  // namespace
}  // namespace kumi::topo
