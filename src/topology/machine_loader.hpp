// Filling a Machine from hwloc: this machine, or a recorded one (hwloc XML, synthetic string)
// for tests and for previewing decisions about hardware that is not at hand.
#pragma once

#include <string>

#include "topology/machine.hpp"

namespace kumi::topo {

// This machine, with its PCI devices. Only the CPUs this process may use (cgroup cpuset) appear.
Machine loadLocalMachine();
// An XML file written by `lstopo --of xml` or hwloc_topology_export_xml (hwloc 2.x).
Machine loadMachineFromXml(const std::string& path);
// An hwloc synthetic description, e.g. "pack:2 numa:1 core:8 pu:2" (CPUs only, no I/O).
Machine loadMachineFromSynthetic(const std::string& description);

}  // namespace kumi::topo
