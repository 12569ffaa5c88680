// Human and machine-readable descriptions of a Machine (what kumi-topo prints).
#pragma once

#include <string>

#include "topology/machine.hpp"

namespace kumi::topo {

// A compact lstopo-like summary, then GPU -> nearest NIC and closest CPUs, then the NICs.
std::string formatText(const Machine& machine);

// One JSON object with stable snake_case field names; docs/TOPOLOGY.md lists them.
std::string formatJson(const Machine& machine);

}  // namespace kumi::topo
