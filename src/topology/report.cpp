#include "topology/report.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "topology/json_writer.hpp"

namespace kumi::topo {
namespace {

using Row = std::vector<std::string>;

// Rows as aligned columns, each line indented by two spaces; the first row is the header.
std::string table(const std::vector<Row>& rows) {
  std::vector<std::size_t> width;
  for (const Row& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const Row& r : rows) {
    std::string line = " ";
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += ' ';
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 1, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);  // an empty last column leaves no trailing blanks
    out += line + '\n';
  }
  return out;
}

std::string counted(std::size_t n, const char* what) { return cat(n, ' ', what, n == 1 ? "" : "s"); }

std::string hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", v & 0xffffu);
  return buf;
}

std::string numaText(int node) { return node < 0 ? "-" : std::to_string(node); }

std::string cacheName(const CacheGroup& c) {
  return cat('L', c.level, c.kind == 'd' ? "d" : c.kind == 'i' ? "i" : "");
}

std::string osDeviceNames(const std::vector<OsDevice>& devs) {
  std::string out;
  for (const OsDevice& d : devs) out += (out.empty() ? "" : ",") + d.name;
  return out;
}

std::string deviceName(const PciDevice& d) {
  if (d.vendorName.empty() || d.name.empty()) return d.vendorName + d.name;
  return d.vendorName + " " + d.name;
}

std::uint64_t totalMemory(const Machine& m) {
  std::uint64_t total = 0;
  for (const NumaNode& n : m.numaNodes) total += n.memoryBytes;
  return total;
}

// nvidia-smi topo -m's matrix, with bandwidths: "NV18 450", "NVS 450", "PIX 31.5".
std::vector<Row> gpuLinkRows(const Machine& m) {
  std::vector<Row> rows{{""}};
  for (std::size_t g = 0; g < m.gpus.size(); ++g) rows[0].push_back("GPU" + std::to_string(g));
  for (std::size_t a = 0; a < m.gpuPeers.size(); ++a) {
    Row r{"GPU" + std::to_string(a)};
    for (std::size_t b = 0; b < m.gpuPeers[a].size(); ++b) {
      const GpuPeer& p = m.gpuPeers[a][b];
      std::string cell;
      switch (p.kind) {
        case GpuLinkKind::Self: cell = "X"; break;
        case GpuLinkKind::NvLink: cell = p.lanes > 0 ? "NV" + std::to_string(p.lanes) : "NV"; break;
        case GpuLinkKind::NvSwitch: cell = "NVS"; break;
        case GpuLinkKind::Pcie: {
          static constexpr const char* kPci[] = {"PIX", "PHB", "NODE", "SYS", "SYS"};
          cell = kPci[static_cast<int>(p.pci.level)];
          break;
        }
      }
      if (p.kind != GpuLinkKind::Self && p.gbps > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " %.4g", p.gbps);
        cell += buf;
      }
      r.push_back(cell);
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace


std::string formatText(const Machine& m) {
  std::string out = cat("Machine: ", m.hostName.empty() ? "(no host name)" : m.hostName, " (", m.source, ")\n");
  out += cat("  ", counted(m.packages.size(), "package"), ", ", counted(m.numaNodes.size(), "NUMA node"), ", ",
             counted(m.cores.size(), "core"), ", ", counted(m.puCount, "PU"), ", ", formatBytes(totalMemory(m)), "\n");
  std::vector<Row> cpuRows;
  for (const Package& p : m.packages)
    cpuRows.push_back({cat("Package ", p.osIndex), cat("cpus ", formatCpuList(p.cpus))});
  for (const NumaNode& n : m.numaNodes)
    cpuRows.push_back({cat("NUMA node ", n.osIndex), cat(formatBytes(n.memoryBytes), ", ",
                       coresOfNumaNode(m, n.osIndex).size(), " cores, cpus ",
                       n.cpus.empty() ? "none" : formatCpuList(n.cpus))});
  std::string caches;
  for (const CacheGroup& c : m.caches)
    caches += cat(caches.empty() ? "" : ", ", cacheName(c), ' ', formatBytes(c.sizeBytes), " x", c.count);
  if (!caches.empty()) cpuRows.push_back({"Caches", caches});
  out += table(cpuRows);

  out += cat("PCI devices: ", m.pciDevices.size(), "\n");
  std::vector<Row> pciRows;
  for (const PciDevice& d : m.pciDevices)
    pciRows.push_back({d.busId, "class " + hex4(d.classId), hex4(d.vendorId) + ":" + hex4(d.deviceId),
                       deviceName(d)});
  if (!pciRows.empty()) out += table(pciRows);

  out += cat("GPUs: ", m.gpus.size(), "\n");
  if (!m.gpus.empty()) {
    std::vector<Row> rows{{"GPU", "bus id", "NUMA", "nearest NIC", "closeness", "close cpus"}};
    for (std::size_t g = 0; g < m.gpus.size(); ++g) {
      const Gpu& gpu = m.gpus[g];
      bool nic = gpu.nearestNic >= 0;
      rows.push_back({std::to_string(g), gpu.busId.empty() ? gpu.name : gpu.busId, numaText(gpu.numaNode),
                      nic ? m.nics[gpu.nearestNic].name : "-",
                      nic ? std::string(closenessName(gpu.nics[gpu.nearestNic].level)) : "-",
                      formatCpuList(gpu.closeCpus)});
    }
    out += table(rows);
    if (m.gpus.size() > 1) {
      out += cat("GPU links (GB/s one way; NV<n>: n direct NVLinks, NVS: through NVSwitches, else PCIe ",
                 "by common ancestor; NVLink from ", m.nvlinkSource.empty() ? "nowhere" : m.nvlinkSource, "):\n");
      out += table(gpuLinkRows(m));
    }
  }

  out += cat("NICs: ", m.nics.size(), "\n");
  if (!m.nics.empty()) {
    std::vector<Row> rows{{"NIC", "name", "bus id", "NUMA", "rdma", "os devices", "close cpus"}};
    for (std::size_t i = 0; i < m.nics.size(); ++i) {
      const Nic& n = m.nics[i];
      rows.push_back({std::to_string(i), n.name, n.busId.empty() ? "-" : n.busId, numaText(n.numaNode),
                      n.rdma ? "yes" : "no", osDeviceNames(n.osDevices), formatCpuList(n.closeCpus)});
    }
    out += table(rows);
  }
  return out;
}

std::string formatJson(const Machine& m) {
  JsonWriter j;
  j.beginObject();
  j.field("source", m.source).field("hostname", m.hostName);
  j.field("pus", m.puCount).field("cores", static_cast<int>(m.cores.size()));
  j.field("memory_bytes", totalMemory(m));

  j.key("packages").beginArray();
  for (const Package& p : m.packages)
    j.beginObject().field("os_index", p.osIndex).field("cpus", formatCpuList(p.cpus)).endObject();
  j.endArray();

  j.key("numa_nodes").beginArray();
  for (const NumaNode& n : m.numaNodes)
    j.beginObject()
        .field("os_index", n.osIndex)
        .field("memory_bytes", n.memoryBytes)
        .field("cores", static_cast<int>(coresOfNumaNode(m, n.osIndex).size()))
        .field("cpus", formatCpuList(n.cpus))
        .endObject();
  j.endArray();

  j.key("caches").beginArray();
  for (const CacheGroup& c : m.caches)
    j.beginObject()
        .field("level", c.level)
        .field("type", c.kind == 'd' ? "data" : c.kind == 'i' ? "instruction" : "unified")
        .field("size_bytes", c.sizeBytes)
        .field("count", c.count)
        .endObject();
  j.endArray();

  j.key("pci_devices").beginArray();
  for (const PciDevice& d : m.pciDevices)
    j.beginObject()
        .field("bus_id", d.busId)
        .field("class_id", "0x" + hex4(d.classId))
        .field("vendor_id", "0x" + hex4(d.vendorId))
        .field("device_id", "0x" + hex4(d.deviceId))
        .field("vendor", d.vendorName)
        .field("name", d.name)
        .endObject();
  j.endArray();

  j.field("nvlink_source", m.nvlinkSource);
  j.key("gpus").beginArray();
  for (std::size_t g = 0; g < m.gpus.size(); ++g) {
    const Gpu& gpu = m.gpus[g];
    j.beginObject().field("index", static_cast<int>(g)).field("bus_id", gpu.busId);
    j.field("vendor_id", "0x" + hex4(gpu.vendorId)).field("device_id", "0x" + hex4(gpu.deviceId));
    j.field("name", gpu.name).field("numa_node", gpu.numaNode).field("cpus", formatCpuList(gpu.closeCpus));
    j.key("os_devices").beginArray();
    for (const std::string& d : gpu.osDevices) j.value(d);
    j.endArray();
    j.key("nearest_nic");
    if (gpu.nearestNic < 0) j.null();
    else j.value(gpu.nearestNic);
    j.field("nearest_nic_name", gpu.nearestNic < 0 ? std::string() : m.nics[gpu.nearestNic].name);
    j.key("nic_closeness").beginArray();  // in NIC order
    for (const Link& l : gpu.nics) j.value(closenessName(l.level));
    j.endArray();
    j.field("pcie_gbps", gpu.pcieGBps);
    j.key("peers").beginArray();  // in GPU order
    for (const GpuPeer& p : g < m.gpuPeers.size() ? m.gpuPeers[g] : std::vector<GpuPeer>{}) {
      j.beginObject().field("kind", gpuLinkKindName(p.kind)).field("gbps", p.gbps).field("nvlinks", p.lanes);
      j.field("pci_closeness", closenessName(p.pci.level)).endObject();
    }
    j.endArray();
    j.endObject();
  }
  j.endArray();

  j.key("nics").beginArray();
  for (std::size_t i = 0; i < m.nics.size(); ++i) {
    const Nic& n = m.nics[i];
    j.beginObject().field("index", static_cast<int>(i)).field("name", n.name).field("bus_id", n.busId);
    j.field("vendor_id", "0x" + hex4(n.vendorId)).field("device_id", "0x" + hex4(n.deviceId));
    j.field("rdma", n.rdma).field("numa_node", n.numaNode).field("cpus", formatCpuList(n.closeCpus));
    j.key("os_devices").beginArray();
    for (const OsDevice& d : n.osDevices)
      j.beginObject().field("name", d.name).field("type", d.rdma ? "openfabrics" : "network").endObject();
    j.endArray();
    j.key("gpu_closeness").beginArray();  // in GPU order, the same links seen from this NIC
    for (const Gpu& gpu : m.gpus) j.value(closenessName(gpu.nics[i].level));
    j.endArray();
    j.endObject();
  }
  j.endArray();

  j.endObject();
  return j.str();
}

}  // namespace kumi::topo
