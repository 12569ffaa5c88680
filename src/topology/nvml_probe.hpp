// NVLink links of this machine's GPUs read from NVML, for where hwloc was built without its NVML
// component (Debian's is): libnvidia-ml is opened at run time, so kumi neither links it nor needs
// it, and a machine without the NVIDIA driver simply has no NVLink facts.
#pragma once

#include <optional>
#include <string>

#include "topology/gpu_fabric.hpp"
#include "topology/machine.hpp"

namespace kumi::topo {

// The links of m's GPUs (found by bus id) as an NVLink matrix: the GPUs first, then every other
// end of an active link (NVSwitch ports by the remote device type NVML reports, or any non-GPU
// end when it cannot tell). nullopt, with the reason in *why, when NVML is absent or fails.
std::optional<NvLinkMatrix> probeNvLinks(const Machine& m, std::string* why);

}  // namespace kumi::topo
