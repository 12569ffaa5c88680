// The GPUDirect RDMA decision (transports/ib/gdr_policy.hpp): KUMI_IB_GDR_LEVEL's names, and the
// choice between dma-buf, peer memory and staging for every reason one of them is ruled out.
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "transports/ib/gdr_policy.hpp"

namespace kumi::ib {
namespace {

using topo::Closeness;

GdrInputs nearPair() {
  GdrInputs in;
  in.gpu = "0000:07:00.0";
  in.nic = "mlx5_0";
  in.path = topo::Link{Closeness::PciSwitch, 4};
  in.support.dmabuf = true;
  in.support.peerMemory = true;
  return in;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(GdrLevel, ParsesNcclNamesInAnyCase) {
  EXPECT_EQ(parseGdrLevel("LOC"), GdrLevel::Loc);
  EXPECT_EQ(parseGdrLevel("pxb"), GdrLevel::Pxb);
  EXPECT_EQ(parseGdrLevel("PIX"), GdrLevel::Pxb);  // one switch and a chain are not told apart
  EXPECT_EQ(parseGdrLevel("Phb"), GdrLevel::Phb);
  EXPECT_EQ(parseGdrLevel("NODE"), GdrLevel::Node);
  EXPECT_EQ(parseGdrLevel("sys"), GdrLevel::Sys);
  EXPECT_EQ(gdrLevelName(GdrLevel::Node), "NODE");
}

TEST(GdrLevel, BadNamesAreErrorsNamingVariableAndToken) {
  for (const char* bad : {"", "PXB2", "3", "all"}) {
    try {
      parseGdrLevel(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kumiInvalidArgument);
      EXPECT_TRUE(has(e.what(), "KUMI_IB_GDR_LEVEL")) << e.what();
      EXPECT_TRUE(has(e.what(), std::string("'") + bad + "'")) << e.what();
    }
  }
}

TEST(GdrLevel, TopologyLevelsMapOntoNcclsPathTypes) {
  EXPECT_EQ(levelOf(Closeness::PciSwitch), GdrLevel::Pxb);
  EXPECT_EQ(levelOf(Closeness::HostBridge), GdrLevel::Phb);
  EXPECT_EQ(levelOf(Closeness::NumaNode), GdrLevel::Node);
  EXPECT_EQ(levelOf(Closeness::Package), GdrLevel::Sys);
  EXPECT_EQ(levelOf(Closeness::Machine), GdrLevel::Sys);
}

TEST(GdrChoice, ANicBesideItsGpuReadsItThroughDmaBuf) {
  const GdrChoice c = chooseGdr(nearPair());
  EXPECT_EQ(c.mechanism, GdrMechanism::DmaBuf);
  EXPECT_TRUE(has(c.reason, "0000:07:00.0")) << c.reason;
  EXPECT_TRUE(has(c.reason, "mlx5_0")) << c.reason;
  EXPECT_TRUE(has(c.reason, "PCIe switch (PXB)")) << c.reason;
  EXPECT_TRUE(has(c.reason, "dma-buf")) << c.reason;
}

TEST(GdrChoice, PeerMemoryWhenDmaBufIsMissingOrTurnedOff) {
  GdrInputs in = nearPair();
  in.support.dmabuf = false;
  in.support.noDmabuf = "the driver does not export dma-bufs";
  GdrChoice c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::PeerMemory);
  EXPECT_TRUE(has(c.reason, "the driver does not export dma-bufs")) << c.reason;

  in = nearPair();
  in.dmabufAllowed = false;
  c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::PeerMemory);
  EXPECT_TRUE(has(c.reason, "KUMI_IB_DMABUF=0")) << c.reason;
}

TEST(GdrChoice, StagingWhenNeitherMechanismIsThereSaysWhyForBoth) {
  GdrInputs in = nearPair();
  in.support = {};
  in.support.noDmabuf = "no dma-buf here";
  in.support.noPeerMemory = "no nvidia_peermem";
  const GdrChoice c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::Staging);
  EXPECT_TRUE(has(c.reason, "no dma-buf here")) << c.reason;
  EXPECT_TRUE(has(c.reason, "no nvidia_peermem")) << c.reason;
}

TEST(GdrChoice, TheLevelBoundsTheDistance) {
  GdrInputs in = nearPair();
  in.path = topo::Link{Closeness::HostBridge, 2};
  GdrChoice c = chooseGdr(in);  // default PXB: through the CPU is too far
  EXPECT_EQ(c.mechanism, GdrMechanism::Staging);
  EXPECT_TRUE(has(c.reason, "host bridge (PHB)")) << c.reason;
  EXPECT_TRUE(has(c.reason, "KUMI_IB_GDR_LEVEL=PXB")) << c.reason;
  in.maxLevel = GdrLevel::Phb;
  EXPECT_EQ(chooseGdr(in).mechanism, GdrMechanism::DmaBuf);

  in.path = topo::Link{Closeness::Package, 0};  // across the sockets
  EXPECT_EQ(chooseGdr(in).mechanism, GdrMechanism::Staging);
  in.maxLevel = GdrLevel::Node;
  EXPECT_EQ(chooseGdr(in).mechanism, GdrMechanism::Staging);
  in.maxLevel = GdrLevel::Sys;
  EXPECT_EQ(chooseGdr(in).mechanism, GdrMechanism::DmaBuf);
}

TEST(GdrChoice, LocNeverReadsGpuMemory) {
  GdrInputs in = nearPair();
  in.maxLevel = GdrLevel::Loc;
  const GdrChoice c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::Staging);
  EXPECT_TRUE(has(c.reason, "KUMI_IB_GDR_LEVEL=LOC")) << c.reason;
}

TEST(GdrChoice, ChecksumsNeedTheHostToReadTheBytes) {
  GdrInputs in = nearPair();
  in.checksum = true;
  const GdrChoice c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::Staging);
  EXPECT_TRUE(has(c.reason, "KUMI_CHECKSUM=1")) << c.reason;
}

TEST(GdrChoice, AnUnknownPathStagesUnlessTheLevelIsSys) {
  GdrInputs in = nearPair();
  in.path.reset();
  for (GdrLevel level : {GdrLevel::Pxb, GdrLevel::Phb, GdrLevel::Node}) {
    in.maxLevel = level;
    const GdrChoice c = chooseGdr(in);
    EXPECT_EQ(c.mechanism, GdrMechanism::Staging) << gdrLevelName(level);
    EXPECT_TRUE(has(c.reason, "unknown")) << c.reason;
  }
  in.maxLevel = GdrLevel::Sys;
  in.support.dmabuf = false;
  const GdrChoice c = chooseGdr(in);
  EXPECT_EQ(c.mechanism, GdrMechanism::PeerMemory);
  EXPECT_TRUE(has(c.reason, "not placed by the topology")) << c.reason;
}

}  // namespace
}  // namespace kumi::ib
