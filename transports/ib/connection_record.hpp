// What a rank sends a peer to connect over RDMA: enough for the peer to bring its queue pairs to
// RTR (GID or LID, MTU, QP numbers, first PSN) and to write into this rank's receive ring
// (address, rkey, slots). One line of text, at most 511 bytes, carried by the bootstrap (TCP)
// transport. A record that does not parse, or asks for more than kumi's own limits allow, is
// an error naming the peer: it comes from another process, so it is never trusted as is.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kumi::ib {

struct ConnectionRecord {
  std::string where;      // "rxe0:1": the peer's device and port, for messages
  std::string linkLayer;  // "roce" or "ib"
  unsigned lid = 0;
  std::array<std::uint8_t, 16> gid{};
  int mtu = 0;  // an ibv_mtu value (1..5)
  std::uint32_t psn = 0;
  int slots = 0;  // a power of two, 2..256
  std::size_t slotBytes = 0;  // 4 KiB..64 MiB
  std::uint64_t ring = 0;
  std::uint32_t rkey = 0;
  std::vector<std::uint32_t> qpns;  // 1..16
};

std::string formatRecord(const ConnectionRecord& r);
// Throws kumi::Error (kumiRemoteError) naming `peer` and the text when it is malformed.
ConnectionRecord parseRecord(const std::string& text, int peer);

}  // namespace kumi::ib
