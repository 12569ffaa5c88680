#include "comm/device_links.hpp"

#include <algorithm>
#include <limits>

namespace kumi {

void putDeviceLinks(const topo::Machine& host, LinkModel& m) {
  const std::size_t gpus = host.gpus.size();
  if (gpus == 0) return;
  const LinkModel defaults;
  if (m.gpusPerHost == defaults.gpusPerHost) m.gpusPerHost = static_cast<int>(gpus);

  double pcie = std::numeric_limits<double>::infinity();
  for (const topo::Gpu& g : host.gpus)
    if (g.pcieGBps > 0) pcie = std::min(pcie, g.pcieGBps);
  if (m.deviceStagingGbps == defaults.deviceStagingGbps && pcie != std::numeric_limits<double>::infinity())
    m.deviceStagingGbps = kDeviceLinkEfficiency * pcie;

  if (m.deviceIntra.gbps != defaults.deviceIntra.gbps) return;
  if (gpus == 1) {
    m.deviceIntra.gbps = m.deviceCopyGbps;
    return;
  }
  double narrowest = std::numeric_limits<double>::infinity();
  for (std::size_t a = 0; a < gpus && a < host.gpuPeers.size(); ++a)
    for (std::size_t b = 0; b < gpus && b < host.gpuPeers[a].size(); ++b)
      if (a != b && host.gpuPeers[a][b].gbps > 0) narrowest = std::min(narrowest, host.gpuPeers[a][b].gbps);
  if (narrowest != std::numeric_limits<double>::infinity()) m.deviceIntra.gbps = kDeviceLinkEfficiency * narrowest;
}

}  // namespace kumi
