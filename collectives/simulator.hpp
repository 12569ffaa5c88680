// Predicts how long a collective takes by running every rank's schedule against a model of the
// cluster instead of a network: the same schedules the executor runs, timed. Messages hold their
// link for overhead + bytes / bandwidth and arrive when that is done and their latency (which
// overlaps the transfer) has passed; what shares a resource queues for it: a rank's CPU
// (reductions, copies, and the copies that move bytes between ranks of one host), a host's NIC
// in each direction (flows between hosts).
// The base of kumi-sim and of the planner's cost model.
#pragma once

#include <string>
#include <vector>

#include "collectives/prepared.hpp"

namespace kumi {

struct SimLink {
  double latencyUs = 1;
  double gbps = 10;       // GB/s (10^9 bytes per second)
  // Time each message holds the link before its bytes flow (system calls, protocol headers):
  // what makes many small messages slower than one large one at the same bandwidth.
  double overheadUs = 0;
  bool operator==(const SimLink&) const = default;
};

struct SimCluster {
  std::string name;
  std::vector<int> hostOf;  // rank -> host
  SimLink intra{0.5, 10};   // between ranks of one host (shared memory, NVLink): the sender's CPU
  // Messages inside a host larger than this travel as a descriptor and the receiver copies them,
  // on its own CPU, when it gets to the receive (shared memory's cross-memory attach). The
  // sender's step is done once the descriptor is posted: the real one waits until the receiver
  // has read it, which the model does not follow (see simulate()). 0: every message is copied
  // by its sender.
  double intraEagerBytes = 0;
  SimLink nic{10, 1.25};    // one NIC of a host, each direction
  // A token bucket in front of each NIC direction (a shaped link, e.g. Linux tbf or cloud burst
  // credits): up to nicBurstBytes pass at nicPeakGbps, the rest at nic.gbps. 0: none.
  double nicBurstBytes = 0;
  double nicPeakGbps = 0;
  int nicsPerHost = 1;      // local rank i uses NIC i mod nicsPerHost
  double reduceGbps = 10;   // bytes reduced per second per rank (both inputs counted once)
  double copyGbps = 10;
  // Cores of a host (0: one per rank). More ranks than cores share them: reductions, copies and
  // shared-memory transfers (CPU copies too) wait for a free core; ranks waiting for messages
  // leave theirs to others.
  int coresPerHost = 0;
  // A host's last-level cache (0: not modelled). When the buffers of a call on a host (every
  // local rank's send, receive and scratch bytes) fit in half of it, CPU work runs at the cached
  // rates and shared-memory transfers faster by cachedCopyGbps / copyGbps: at 4 ranks on this
  // project's machine a 2 MiB allreduce takes a fifth of the time of a 4 MiB one, not a half.
  // The defaults are what 4 ranks on its 2 cores achieve (data written by one core, read by
  // another), not a lone core's memcpy in L2, which is twice as fast again.
  double cacheBytes = 0;
  double cachedReduceGbps = 15;
  double cachedCopyGbps = 20;
  // Device buffers that cross a network (or, with stagedInsideHost, any link) pass through pinned
  // host memory: the sender's GPU copies the bytes out before they go, the receiver's copies or
  // reduces them in from there, at this rate (the GPU's PCIe link). 0: no staging (host buffers).
  double stagingGbps = 0;
  bool stagedInsideHost = false;
};

struct SimResult {
  double seconds = 0;       // until the last rank finished
  std::size_t messages = 0;
  std::string error;        // non-empty: the schedules deadlock or mismatch
};

// schedules[r] is rank r's; elemSize converts elements to bytes. The collective runs warmup +
// calls times back to back, as a benchmark loop runs it, and seconds is the mean time of the last
// `calls`: on a shaped link the token bucket does not refill between calls, so a loop's calls
// are slower than a lone one. The default (1, 0) is a lone call, every link fresh.
SimResult simulate(const std::vector<PreparedSchedule>& schedules, const SimCluster& cluster, std::size_t elemSize,
                   int calls = 1, int warmup = 0);

}  // namespace kumi
