// Settings of the RDMA transport, from the KUMI_IB_* environment (docs/RDMA.md lists them with
// the reasons for their defaults). Read once per communicator; a bad value is an error that names
// the variable, never a silent default.
#pragma once

#include <cstddef>
#include <string>

#include "transports/ib/gdr_policy.hpp"
#include "transports/ib/gid_select.hpp"
#include "transports/ib/hca_filter.hpp"

namespace kumi::ib {

struct IbOptions {
  HcaFilter hca;                 // KUMI_IB_HCA: which devices and ports (NCCL's syntax)
  // KUMI_IB_QPS_PER_CONNECTION: queue pairs per peer; consecutive slots go round-robin over them.
  // Each QP is its own flow (its own UDP source port under RoCE v2), so several spread one
  // pair's bytes over the fabric's equal-cost paths. 1 by default, as with NCCL.
  int qpsPerConnection = 1;
  int trafficClass = 0;          // KUMI_IB_TC: the GRH traffic class (DSCP << 2 on RoCE v2)
  int serviceLevel = 0;          // KUMI_IB_SL: the InfiniBand service level (PCP on RoCE)
  // KUMI_IB_TIMEOUT: the local ACK timeout exponent, 4.096 us x 2^t per try. 16 (~268 ms) is far
  // beyond any healthy round trip, and with 7 retries a dead peer is known in ~2 s, as fast as
  // TCP's heartbeats find one; raise it (NCCL uses 20) on fabrics with long PFC pause storms.
  int timeout = 16;
  int retryCount = 7;            // KUMI_IB_RETRY_CNT: retransmissions before the QP fails (0..7)
  GidPolicy gid;                 // KUMI_IB_GID_INDEX, KUMI_IB_ADDR_FAMILY, KUMI_IB_ADDR_RANGE
  // KUMI_IB_BUFFER / KUMI_IB_SLOTS: the staging ring per peer and direction. 8 x 512 KiB keeps a
  // 100 Gb/s link busy across the ~40 us that a slot takes to drain and come back as a credit.
  std::size_t slotBytes = 512 << 10;
  int slots = 8;
  // KUMI_IB_GDR_LEVEL: how close a GPU and its NIC must be for the NIC to read GPU memory
  // (GPUDirect RDMA). PXB, NCCL's default: only through a PCIe switch, never across the CPU.
  GdrLevel gdrLevel = GdrLevel::Pxb;
  bool dmabuf = true;  // KUMI_IB_DMABUF=0: peer memory even where dma-buf works

  static IbOptions fromEnvironment();
};

}  // namespace kumi::ib
