#include "transports/ib/gdr_policy.hpp"

#include <array>
#include <cctype>

#include "core/error.hpp"

namespace kumi::ib {
namespace {

struct Named {
  std::string_view name;
  GdrLevel level;
};
constexpr std::array<Named, 6> kLevels{{{"LOC", GdrLevel::Loc},
                                        {"PIX", GdrLevel::Pxb},
                                        {"PXB", GdrLevel::Pxb},
                                        {"PHB", GdrLevel::Phb},
                                        {"NODE", GdrLevel::Node},
                                        {"SYS", GdrLevel::Sys}}};

// Where the two meet, in words, for the reason.
std::string_view meetingPlace(topo::Closeness c) {
  switch (c) {
    case topo::Closeness::PciSwitch:
      return "share a PCIe switch";
    case topo::Closeness::HostBridge:
      return "meet at a CPU's PCIe host bridge";
    case topo::Closeness::NumaNode:
      return "meet only inside a NUMA node, across host bridges";
    case topo::Closeness::Package:
      return "meet only inside a CPU package, across its NUMA nodes";
    case topo::Closeness::Machine:
      break;
  }
  return "meet only across the socket interconnect";
}

}  // namespace

GdrLevel parseGdrLevel(std::string_view text) {
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Named& n : kLevels)
    if (upper == n.name) return n.level;
  fail(kumiInvalidArgument, "KUMI_IB_GDR_LEVEL='", text, "': expected LOC, PIX, PXB, PHB, NODE or SYS");
}

std::string_view gdrLevelName(GdrLevel level) {
  switch (level) {
    case GdrLevel::Loc:
      return "LOC";
    case GdrLevel::Pxb:
      return "PXB";
    case GdrLevel::Phb:
      return "PHB";
    case GdrLevel::Node:
      return "NODE";
    case GdrLevel::Sys:
      break;
  }
  return "SYS";
}

GdrLevel levelOf(topo::Closeness c) {
  switch (c) {
    case topo::Closeness::PciSwitch:
      return GdrLevel::Pxb;
    case topo::Closeness::HostBridge:
      return GdrLevel::Phb;
    case topo::Closeness::NumaNode:
      return GdrLevel::Node;
    case topo::Closeness::Package:
    case topo::Closeness::Machine:
      break;
  }
  return GdrLevel::Sys;
}

std::string_view gdrMechanismName(GdrMechanism m) {
  switch (m) {
    case GdrMechanism::DmaBuf:
      return "dma-buf";
    case GdrMechanism::PeerMemory:
      return "peer memory";
    case GdrMechanism::Staging:
      break;
  }
  return "staging";
}

GdrChoice chooseGdr(const GdrInputs& in) {
  const std::string pair = cat("GPU ", in.gpu.empty() ? std::string("(no bus id)") : in.gpu, " and ", in.nic);
  auto staged = [&](const std::string& why) { return GdrChoice{GdrMechanism::Staging, cat(pair, ": staging through host memory: ", why)}; };
  if (in.maxLevel == GdrLevel::Loc) return staged("KUMI_IB_GDR_LEVEL=LOC");
  if (in.checksum) return staged("KUMI_CHECKSUM=1 has the host compute every part's CRC32C, and the host cannot read GPU memory");
  if (!in.path && in.maxLevel != GdrLevel::Sys)
    return staged(cat("the topology does not place both on PCIe, so how far apart they are is unknown (a NIC reading GPU "
                      "memory across the CPU can be slower than staging; KUMI_IB_GDR_LEVEL=SYS allows it), at KUMI_IB_GDR_LEVEL=",
                      gdrLevelName(in.maxLevel)));
  const GdrLevel at = in.path ? levelOf(in.path->level) : GdrLevel::Sys;
  const std::string where =
      in.path ? cat(meetingPlace(in.path->level), " (", gdrLevelName(at), ")")
              : std::string("are not placed by the topology (KUMI_IB_GDR_LEVEL=SYS allows any distance)");
  if (at > in.maxLevel)
    return staged(cat("they ", where, ", farther apart than KUMI_IB_GDR_LEVEL=", gdrLevelName(in.maxLevel)));
  if (in.support.dmabuf && in.dmabufAllowed) return {GdrMechanism::DmaBuf, cat(pair, " ", where, ": GPUDirect RDMA through dma-buf")};
  if (in.support.peerMemory) {
    const std::string whyNot = in.support.dmabuf ? std::string("KUMI_IB_DMABUF=0") : in.support.noDmabuf;
    return {GdrMechanism::PeerMemory, cat(pair, " ", where, ": GPUDirect RDMA through peer memory (no dma-buf: ", whyNot, ")")};
  }
  return staged(cat("they ", where, ", but the NIC cannot reach GPU memory: no dma-buf (",
                    in.support.dmabuf ? std::string("KUMI_IB_DMABUF=0") : in.support.noDmabuf, "), no peer memory (",
                    in.support.noPeerMemory, ")"));
}

}  // namespace kumi::ib
