// Sets of logical CPUs (Linux CPU numbers, which are hwloc's PU os indices) and their text form,
// the "0-23,48-71" list syntax of /sys, taskset -c and numactl, so that output can be pasted there.
#pragma once

#include <string>
#include <vector>

namespace kumi::topo {

// Sorted, without duplicates.
using CpuList = std::vector<int>;

std::string formatCpuList(const CpuList& cpus);  // {} -> "" ; {0,1,2,5} -> "0-2,5"
CpuList parseCpuList(const std::string& text);   // inverse; throws kumiInvalidArgument when malformed
CpuList normalized(CpuList cpus);                // sorts and removes duplicates
bool containsAll(const CpuList& outer, const CpuList& inner);

}  // namespace kumi::topo
