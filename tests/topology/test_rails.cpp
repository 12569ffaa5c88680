// Rails: which RDMA port each local rank uses, on the recorded 2-socket node with 8 GPUs and 4
// NICs (GPU g shares a PCIe switch with mlx5_<g/2>) and on a machine without GPUs.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "topology/machine_loader.hpp"
#include "topology/rails.hpp"
#include "transports/ib/gdr_policy.hpp"

namespace {

using namespace kumi::topo;

const Machine& node() {
  static const Machine m = loadMachineFromXml(std::string(KUMI_TOPOLOGY_FIXTURES) + "/two-socket-8gpu-4nic.xml");
  return m;
}

std::vector<int> portsOf(const std::vector<RailChoice>& rails) {
  std::vector<int> out;
  for (const auto& r : rails) out.push_back(r.port);
  return out;
}

TEST(Rails, EightGpusOnFourNicsTakeTheNicBehindTheirSwitchTwoEach) {
  const auto rails = assignRails(node(), {"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"}, 8);
  EXPECT_EQ(portsOf(rails), (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
  for (const auto& r : rails) EXPECT_NE(r.reason.find("pci_switch"), std::string::npos) << r.reason;
}

TEST(Rails, PortOrderIsTheCallersNotTheMachines) {
  // KUMI_IB_HCA listed the NICs in another order: indices follow the list, choices follow PCIe.
  const auto rails = assignRails(node(), {"mlx5_3", "mlx5_2", "mlx5_1", "mlx5_0"}, 8);
  EXPECT_EQ(portsOf(rails), (std::vector<int>{3, 3, 2, 2, 1, 1, 0, 0}));
}

TEST(Rails, FewerNicsThanPairsAreSharedEvenly) {
  // Only the first socket's NICs are admitted: the second socket's GPUs cross to them, four each.
  const auto rails = assignRails(node(), {"mlx5_0", "mlx5_1"}, 8);
  const auto ports = portsOf(rails);
  EXPECT_EQ(std::vector<int>(ports.begin(), ports.begin() + 4), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(std::count(ports.begin(), ports.end(), 0), 4);
  EXPECT_EQ(std::count(ports.begin(), ports.end(), 1), 4);
}

TEST(Rails, FourRanksUseEveryNicRatherThanShareTheNearOnes) {
  // GPU 1 finds its switch's NIC taken and moves to the next on its socket; GPUs 2 and 3 find
  // both of their socket's NICs taken and cross to the other socket's.
  const auto ports = portsOf(assignRails(node(), {"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"}, 4));
  EXPECT_EQ(ports, (std::vector<int>{0, 1, 2, 3}));
}

TEST(Rails, WithoutGpusRanksGoRoundRobin) {
  const Machine m = loadMachineFromSynthetic("pack:2 numa:1 core:4 pu:2");
  const auto rails = assignRails(m, {"rxe0", "rxe1"}, 5);
  EXPECT_EQ(portsOf(rails), (std::vector<int>{0, 1, 0, 1, 0}));
  EXPECT_NE(rails[0].reason.find("round robin"), std::string::npos) << rails[0].reason;
}

TEST(Rails, PortsHwlocDoesNotPlaceGoRoundRobinToo) {
  const auto rails = assignRails(node(), {"rxe0", "rxe1"}, 4);
  EXPECT_EQ(portsOf(rails), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_NE(rails[1].reason.find("GPU 1"), std::string::npos) << rails[1].reason;
}

}  // namespace

// GPUDirect RDMA: how each GPU reaches one NIC, and what the policy makes of it at NCCL's
// default level (only through a PCIe switch).
TEST(GpuPaths, EachGpuReachesANicAtItsOwnDistanceAndOnlyTheSwitchPairReadsGpuMemory) {
  const auto paths = gpuPathsTo(node(), "mlx5_0");
  ASSERT_EQ(paths.size(), 8u);
  for (std::size_t g = 0; g < paths.size(); ++g) {
    EXPECT_EQ(paths[g].busId, node().gpus[g].busId);
    const auto level = kumi::ib::levelOf(paths[g].link.level);
    if (g < 2) {
      EXPECT_EQ(level, kumi::ib::GdrLevel::Pxb) << "GPU " << g;
    } else if (g < 4) {
      EXPECT_GT(level, kumi::ib::GdrLevel::Pxb) << "GPU " << g << " is behind another switch of the socket";
      EXPECT_LT(level, kumi::ib::GdrLevel::Sys) << "GPU " << g << " is on the same socket";
    } else {
      EXPECT_EQ(level, kumi::ib::GdrLevel::Sys) << "GPU " << g << " is on the other socket";
    }
    kumi::ib::GdrInputs in;
    in.gpu = paths[g].busId;
    in.nic = "mlx5_0";
    in.path = paths[g].link;
    in.support.dmabuf = true;
    const auto choice = kumi::ib::chooseGdr(in);
    EXPECT_EQ(choice.mechanism, g < 2 ? kumi::ib::GdrMechanism::DmaBuf : kumi::ib::GdrMechanism::Staging)
        << "GPU " << g << ": " << choice.reason;
  }
}

TEST(GpuPaths, ANicTheTopologyDoesNotPlaceHasNoPaths) {
  EXPECT_TRUE(gpuPathsTo(node(), "rxe0").empty());
}
