// What the planner and kumi-sim believe about links, and the one text format that carries it:
// `key = value` lines, '#' comments. A tuning file (KUMI_TUNING_FILE, written by kumi-bench
// --calibrate) and a kumi-sim cluster description are the same format; a cluster adds its
// shape (nodes, ranks_per_node, name), which a communicator ignores since it knows its own.
// docs/PLANNER.md lists the keys.
#pragma once

#include <string>

#include "collectives/simulator.hpp"

namespace kumi {

struct LinkModel {
  SimLink intra{0.5, 8, 0.5};       // shared memory between ranks of one host
  double intraEagerBytes = 0;       // larger shared-memory messages are read by the receiver (SimCluster)
  SimLink loopback{12, 2.5, 4};     // TCP between ranks of one host (KUMI_TRANSPORT=tcp)
  SimLink nic{25, 1.1, 4};          // TCP between hosts, per NIC and direction
  int nicsPerHost = 1;
  double nicBurstBytes = 0;         // token bucket of a shaped NIC (0: none); see SimCluster
  double nicPeakGbps = 0;
  int coresPerHost = 0;             // 0: as many as ranks (a communicator fills in rank 0's CPUs)
  double oversubscription = 1;      // fabric: each NIC gets 1/oversubscription of its rate
  double reduceGbps = 8;
  double copyGbps = 10;
  // A host's last-level cache and the rates of work whose buffers fit in it (SimCluster, whose
  // defaults these are). 0: not modelled; a communicator fills in its host's (hwloc), kumi-sim
  // leaves it out.
  double cacheBytes = 0;
  double cachedReduceGbps = SimCluster{}.cachedReduceGbps;
  double cachedCopyGbps = SimCluster{}.cachedCopyGbps;
  // Calls on device buffers, planned apart from host ones (docs/PLANNER.md): ranks of one host
  // exchange them by CUDA IPC over NVLink or PCIe, the GPU reduces and copies, and messages that
  // cross a network are staged through pinned host memory over the GPU's PCIe link. The defaults
  // are a PCIe-only server; a communicator puts in its host's links from the topology (hwloc and
  // NVML) where the tuning file leaves them at these values.
  SimLink deviceIntra{8, 20, 5};  // one host hop per message (the name; the GPU waits on its IPC event), PCIe Gen4 x16 at ~80%
  double deviceReduceGbps = 1000;  // HBM
  double deviceCopyGbps = 1000;
  double deviceStagingGbps = 20;   // device <-> pinned host memory
  int gpusPerHost = 0;             // ranks beyond it share GPUs (0: one per rank)
  // Only in cluster descriptions (kumi-sim).
  std::string name;
  int nodes = 1, ranksPerNode = 1;
  bool operator==(const LinkModel&) const = default;
};

// Throws kumiInvalidArgument naming the source, line and bad token.
LinkModel parseLinkModel(const std::string& text, const std::string& source);
LinkModel loadLinkModel(const std::string& path);
// The exact text parseLinkModel reads back into an equal model (for sharing it through the store).
std::string formatLinkModel(const LinkModel& m);

// The cluster a communicator plans against: its host map, with ranks of one host joined by
// shared memory or, with sharedMemory false, by loopback TCP; with `device`, for calls on
// device buffers (the device section of the model).
SimCluster clusterFor(const LinkModel& m, const std::vector<int>& hostOf, bool sharedMemory, bool device = false);

}  // namespace kumi
