#include "transports/ib/verbs.hpp"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace kumi::ib {

PinnedArea::PinnedArea(std::size_t bytes) : bytes_(bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) failErrno("RDMA transport: mapping ", bytes, " bytes for its rings");
  data_ = static_cast<char*>(p);
}

PinnedArea& PinnedArea::operator=(PinnedArea&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, bytes_);
    data_ = o.data_;
    bytes_ = o.bytes_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

PinnedArea::~PinnedArea() {
  if (data_) ::munmap(data_, bytes_);
}

MrPtr registerMemory(ibv_pd* pd, void* data, std::size_t bytes, int access, const std::string& device) {
  ibv_mr* mr = ::ibv_reg_mr(pd, data, bytes, access);
  if (mr) return MrPtr(mr);
  const int e = errno;
  std::string hint;
  if (e == ENOMEM || e == EPERM || e == EAGAIN) {
    rlimit lim{};
    ::getrlimit(RLIMIT_MEMLOCK, &lim);
    hint = lim.rlim_cur == RLIM_INFINITY
               ? std::string()
               : cat("; the locked-memory limit is ", lim.rlim_cur / 1024,
                     " KiB (ulimit -l): RDMA needs it unlimited (docs/RDMA.md, 'memlock')");
  }
  fail(kumiSystemError, "RDMA transport: registering ", bytes, " bytes with ", device, " failed: ", std::strerror(e),
       hint);
}

namespace {

struct DeviceList {
  ibv_device** list = nullptr;
  int count = 0;
  DeviceList() { list = ::ibv_get_device_list(&count); }
  ~DeviceList() {
    if (list) ::ibv_free_device_list(list);
  }
  DeviceList(const DeviceList&) = delete;
  DeviceList& operator=(const DeviceList&) = delete;
};

}  // namespace

ContextPtr openDevice(const std::string& name) {
  DeviceList devices;
  for (int i = 0; i < devices.count; ++i) {
    if (name != ::ibv_get_device_name(devices.list[i])) continue;
    ibv_context* c = ::ibv_open_device(devices.list[i]);
    if (!c) failErrno("RDMA transport: opening device ", name);
    return ContextPtr(c);
  }
  fail(kumiSystemError, "RDMA transport: device ", name, " is gone");
}

std::vector<PortInfo> findPorts(const HcaFilter& filter, std::string* whyNone) {
  DeviceList devices;
  std::vector<PortInfo> ports;
  if (!devices.list || devices.count == 0) {
    if (whyNone) *whyNone = devices.list ? "no RDMA device (ibv_get_device_list found none)"
                                         : cat("no RDMA device (ibv_get_device_list: ", std::strerror(errno), ")");
    return ports;
  }
  std::vector<std::string> seen;
  for (int i = 0; i < devices.count; ++i) {
    ibv_device* dev = devices.list[i];
    const std::string name = ::ibv_get_device_name(dev);
    if (!filter.admitsAnyPortOf(name)) {
      seen.push_back(name + " (excluded by KUMI_IB_HCA)");
      continue;
    }
    ContextPtr ctx(::ibv_open_device(dev));
    if (!ctx) {
      seen.push_back(cat(name, " (cannot open: ", std::strerror(errno), ")"));
      continue;
    }
    ibv_device_attr attr{};
    if (::ibv_query_device(ctx.get(), &attr) != 0) {
      seen.push_back(name + " (query failed)");
      continue;
    }
    for (int port = 1; port <= attr.phys_port_cnt; ++port) {
      ibv_port_attr pa{};
      if (::ibv_query_port(ctx.get(), static_cast<std::uint8_t>(port), &pa) != 0) continue;
      const std::string id = cat(name, ":", port);
      if (!filter.admits(name, port)) {
        seen.push_back(id + " (excluded by KUMI_IB_HCA)");
        continue;
      }
      if (pa.state != IBV_PORT_ACTIVE) {
        seen.push_back(cat(id, " (", ::ibv_port_state_str(pa.state), ")"));
        continue;
      }
      PortInfo p;
      p.device = name;
      p.port = port;
      p.ethernet = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
      p.gidTableLength = pa.gid_tbl_len;
      p.activeMtu = pa.active_mtu;
      p.lid = pa.lid;
      p.sysfsPortDir = cat(dev->ibdev_path, "/ports/", port);
      ports.push_back(std::move(p));
    }
  }
  std::stable_sort(ports.begin(), ports.end(), [&](const PortInfo& a, const PortInfo& b) {
    return filter.rank(a.device, a.port) < filter.rank(b.device, b.port);
  });
  if (!ports.empty()) {
    const bool ethernet = ports.front().ethernet;
    std::erase_if(ports, [&](const PortInfo& p) { return p.ethernet != ethernet; });
  }
  if (ports.empty() && whyNone) {
    std::string list;
    for (const auto& s : seen) list += (list.empty() ? "" : ", ") + s;
    *whyNone = cat("no usable RDMA port (", list.empty() ? std::string("none found") : list, ")");
  }
  return ports;
}

std::string statusText(ibv_wc_status status) {
  return cat(::ibv_wc_status_str(status), " (status ", static_cast<int>(status), ")");
}

int mtuBytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256: return 256;
    case IBV_MTU_512: return 512;
    case IBV_MTU_1024: return 1024;
    case IBV_MTU_2048: return 2048;
    case IBV_MTU_4096: return 4096;
  }
  return 0;
}

}  // namespace kumi::ib
