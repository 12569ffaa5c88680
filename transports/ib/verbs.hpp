// The libibverbs objects the RDMA transport holds, each owned by a unique_ptr whose deleter is the
// matching verbs call, and the discovery of usable ports. Only this file and the transport include
// <infiniband/verbs.h>; nothing of it reaches the public headers.
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "transports/ib/hca_filter.hpp"

namespace kumi::ib {

// A unique_ptr deleter that calls the verbs function releasing the object.
template <auto Release>
struct Releaser {
  template <class T>
  void operator()(T* p) const {
    Release(p);
  }
};
using ContextPtr = std::unique_ptr<ibv_context, Releaser<&::ibv_close_device>>;
using PdPtr = std::unique_ptr<ibv_pd, Releaser<&::ibv_dealloc_pd>>;
using ChannelPtr = std::unique_ptr<ibv_comp_channel, Releaser<&::ibv_destroy_comp_channel>>;
using CqPtr = std::unique_ptr<ibv_cq, Releaser<&::ibv_destroy_cq>>;
using QpPtr = std::unique_ptr<ibv_qp, Releaser<&::ibv_destroy_qp>>;
using MrPtr = std::unique_ptr<ibv_mr, Releaser<&::ibv_dereg_mr>>;

// Page-aligned anonymous memory for rings that the NIC reads and writes (registered memory must
// not share pages with unrelated heap data that a fork could copy-on-write away from the NIC).
class PinnedArea {
 public:
  PinnedArea() = default;
  explicit PinnedArea(std::size_t bytes);
  PinnedArea(PinnedArea&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr, o.bytes_ = 0; }
  PinnedArea& operator=(PinnedArea&& o) noexcept;
  PinnedArea(const PinnedArea&) = delete;
  PinnedArea& operator=(const PinnedArea&) = delete;
  ~PinnedArea();
  char* data() const { return data_; }
  std::size_t size() const { return bytes_; }

 private:
  char* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// Registers [data, data + bytes) on pd; the error names the device and, for ENOMEM/EPERM, the
// locked-memory limit that is almost always the cause in containers.
MrPtr registerMemory(ibv_pd* pd, void* data, std::size_t bytes, int access, const std::string& device);

// One active port of an RDMA device that KUMI_IB_HCA admits.
struct PortInfo {
  std::string device;          // e.g. "mlx5_0", "rxe0"
  int port = 1;
  bool ethernet = true;        // RoCE (GIDs chosen by content) rather than InfiniBand (LIDs)
  int gidTableLength = 0;
  ibv_mtu activeMtu = IBV_MTU_1024;
  std::uint16_t lid = 0;
  std::string sysfsPortDir;    // <ibdev_path>/ports/<port>, where the GID table is read
  std::string describe() const { return device + ":" + std::to_string(port); }
  // "roce" or "ib": two ranks talk over RDMA only when their ports agree.
  const char* linkLayer() const { return ethernet ? "roce" : "ib"; }
};

// Active ports of the devices that filter admits, in the filter's order (the listed order for
// an inclusion list, else device order), and of one link layer: the first port's (a rank speaks
// RoCE or InfiniBand, not both). When none is usable, *whyNone says why (no device, none
// admitted, none active), for the one INFO line of the TCP fallback.
std::vector<PortInfo> findPorts(const HcaFilter& filter, std::string* whyNone);

// Opens a device by name; throws naming it.
ContextPtr openDevice(const std::string& name);

// "transport retry counter exceeded" and friends, with the numeric status.
std::string statusText(ibv_wc_status status);

// 256..4096 for an ibv_mtu.
int mtuBytes(ibv_mtu mtu);

}  // namespace kumi::ib
