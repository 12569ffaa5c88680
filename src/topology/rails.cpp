#include "topology/rails.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace kumi::topo {

namespace {

// The port that machine NIC `nic` is, or -1: an RDMA NIC is known by its verbs device name.
int portOf(const Nic& nic, const std::vector<std::string>& ports) {
  if (!nic.rdma) return -1;
  for (std::size_t p = 0; p < ports.size(); ++p) {
    if (nic.name == ports[p]) return static_cast<int>(p);
    for (const OsDevice& d : nic.osDevices)
      if (d.rdma && d.name == ports[p]) return static_cast<int>(p);
  }
  return -1;
}

}  // namespace

std::vector<RailChoice> assignRails(const Machine& machine, const std::vector<std::string>& ports, int localSize) {
  KUMI_REQUIRE_ARG(!ports.empty(), "assignRails: no ports");
  KUMI_REQUIRE_ARG(localSize >= 1, "assignRails: local size ", localSize);
  const int n = static_cast<int>(ports.size());
  const int cap = (localSize + n - 1) / n;
  std::vector<int> load(ports.size(), 0);
  std::vector<RailChoice> out(static_cast<std::size_t>(localSize));
  for (int l = 0; l < localSize; ++l) {
    RailChoice& c = out[static_cast<std::size_t>(l)];
    c.port = -1;
    if (l < static_cast<int>(machine.gpus.size())) {
      const Gpu& gpu = machine.gpus[static_cast<std::size_t>(l)];
      for (int nic : nicsByCloseness(machine, l)) {
        const int p = portOf(machine.nics[static_cast<std::size_t>(nic)], ports);
        if (p < 0 || load[static_cast<std::size_t>(p)] >= cap) continue;
        c.port = p;
        c.reason = cat("nearest free NIC to GPU ", l, " (", gpu.busId, ", ",
                       closenessName(gpu.nics[static_cast<std::size_t>(nic)].level), ")");
        break;
      }
    }
    if (c.port < 0) {
      // Least loaded, lowest index first: round robin when nothing is known.
      c.port = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      c.reason = l < static_cast<int>(machine.gpus.size())
                     ? cat("round robin: hwloc places none of the ports near GPU ", l)
                     : cat("round robin: local rank ", l, " has no GPU of its own");
    }
    ++load[static_cast<std::size_t>(c.port)];
  }
  return out;
}

std::vector<GpuPath> gpuPathsTo(const Machine& machine, const std::string& port) {
  std::vector<GpuPath> out;
  for (std::size_t n = 0; n < machine.nics.size(); ++n) {
    if (portOf(machine.nics[n], {port}) < 0) continue;
    for (const Gpu& g : machine.gpus)
      if (!g.busId.empty() && n < g.nics.size()) out.push_back({g.busId, g.nics[n]});
    break;
  }
  return out;
}

}  // namespace kumi::topo
