// CPU binding of a rank (KUMI_BIND). The decision is a pure function of the machine and the
// rank's place among the ranks of its host, so it can be tested on recorded machines; applying
// it is a separate step that reports what it did.
//
//   off     (default) leave the affinity alone
//   numa    local rank i -> NUMA node i mod (NUMA nodes with CPUs); that node's cores are divided
//           into contiguous, near-equal slices, one per local rank placed on it
//   device  local rank i -> the CPUs closest to GPU i mod (GPUs), shared by the ranks of GPUs
//           that hang off the same CPUs; without GPUs, as numa
#pragma once

#include <string>
#include <string_view>

#include "topology/cpu_list.hpp"
#include "topology/machine.hpp"

namespace kumi::topo {

enum class BindMode { Off, Numa, Device };

std::string_view bindModeName(BindMode mode);  // "off", "numa", "device"
// Case-insensitive; anything else is kumiInvalidArgument naming `source` and the accepted values.
BindMode parseBindMode(std::string_view text, std::string_view source = "KUMI_BIND");
// KUMI_BIND, or Off when it is unset or empty.
BindMode bindModeFromEnv();

struct BindPlan {
  BindMode requested = BindMode::Off;
  BindMode used = BindMode::Off;  // Numa where Device found no GPU to follow
  int localRank = 0;
  int localSize = 1;
  int numaNode = -1;  // numa: the node whose cores were divided (-1: the machine has none with CPUs)
  int share = 0;      // numa: which slice of that node's cores, of `sharers`
  int sharers = 1;
  int gpu = -1;       // device: the GPU followed
  CpuList cpus;       // empty when used == Off
  std::string note;   // why `used` differs from `requested`, else empty

  // One line for logs and kumi-topo: "local rank 3/8: numa node 1 (slice 2/4) -> cpus 36-41,84-89".
  std::string describe() const;
};

// Throws kumiInvalidArgument unless 0 <= localRank < localSize.
BindPlan planBinding(const Machine& machine, int localRank, int localSize, BindMode mode);

struct BindOutcome {
  BindPlan plan;
  bool applied = false;  // false when the plan is Off
  std::string message;   // what was done, for the caller to log
};

// Plans on `machine` and binds every thread of this process to the planned CPUs.
BindOutcome applyBinding(const Machine& machine, int localRank, int localSize, BindMode mode);
// The communicator's entry point: reads KUMI_BIND, and only when it is not off loads this machine's
// topology, plans and binds. Throws kumi::Error (kumiInvalidArgument for a bad KUMI_BIND or
// local rank, kumiSystemError when the kernel refuses the affinity).
BindOutcome applyBinding(int localRank, int localSize);

}  // namespace kumi::topo
