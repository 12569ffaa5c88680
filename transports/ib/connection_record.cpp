#include "transports/ib/connection_record.hpp"

#include <sstream>

#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi::ib {

namespace {

// ib2: the receive ring is followed by an area for GPUDirect RDMA receive adverts.
constexpr const char* kVersion = "kumi-ib2";

[[noreturn]] void malformed(const std::string& text, int peer, const char* why) {
  fail(kumiRemoteError, "rank ", peer, " sent a malformed RDMA connection record (", why, "): '", text.substr(0, 200),
       "'");
}

}  // namespace

std::string formatRecord(const ConnectionRecord& r) {
  std::string gid, qpns;
  for (auto b : r.gid) gid += formatted("%02x", b);
  for (auto n : r.qpns) qpns += cat(" ", n);
  return cat(kVersion, " ", r.where, " ", r.linkLayer, " ", r.lid, " ", gid, " ", r.mtu, " ", r.psn, " ", r.slots, " ",
             r.slotBytes, " ", r.ring, " ", r.rkey, " ", r.qpns.size(), qpns);
}

ConnectionRecord parseRecord(const std::string& text, int peer) {
  std::istringstream in(text);
  ConnectionRecord r;
  std::string version, gid;
  long long lid = 0, mtu = 0, psn = 0, slots = 0, slotBytes = 0, rkey = 0, count = 0;
  std::string ringText;
  in >> version >> r.where >> r.linkLayer >> lid >> gid >> mtu >> psn >> slots >> slotBytes >> ringText >> rkey >> count;
  if (!in || version != kVersion) malformed(text, peer, "not a kumi-ib2 record (another kumi version?)");
  if (r.linkLayer != "roce" && r.linkLayer != "ib") malformed(text, peer, "unknown link layer");
  if (gid.size() != 32 || gid.find_first_not_of("0123456789abcdef") != std::string::npos)
    malformed(text, peer, "GID is not 32 hex digits");
  // Read by hand: a 64-bit address does not fit the signed reads above, and an unsigned read
  // would take "-1" as 2^64 - 1.
  std::uint64_t ring = 0;
  if (ringText.empty() || ringText.size() > 20) malformed(text, peer, "ring address");
  for (char ch : ringText) {
    if (ch < '0' || ch > '9' || ring > (UINT64_MAX - static_cast<std::uint64_t>(ch - '0')) / 10)
      malformed(text, peer, "ring address");
    ring = ring * 10 + static_cast<std::uint64_t>(ch - '0');
  }
  const bool inRange = lid >= 0 && lid <= 0xffff && mtu >= 1 && mtu <= 5 && psn >= 0 && psn <= 0xffffff &&
                       slots >= 2 && slots <= 256 && (slots & (slots - 1)) == 0 && slotBytes >= 4096 &&
                       slotBytes <= (64ll << 20) && rkey >= 0 && rkey <= 0xffffffffll && count >= 1 && count <= 16;
  if (!inRange) malformed(text, peer, "a value out of range");
  r.lid = static_cast<unsigned>(lid);
  for (std::size_t i = 0; i < 16; ++i)
    r.gid[i] = static_cast<std::uint8_t>(std::stoul(gid.substr(2 * i, 2), nullptr, 16));  // hex checked above
  r.mtu = static_cast<int>(mtu);
  r.psn = static_cast<std::uint32_t>(psn);
  r.slots = static_cast<int>(slots);
  r.slotBytes = static_cast<std::size_t>(slotBytes);
  r.ring = ring;
  r.rkey = static_cast<std::uint32_t>(rkey);
  for (long long i = 0; i < count; ++i) {
    long long n = -1;
    in >> n;
    if (!in || n < 0 || n > 0xffffff) malformed(text, peer, "queue pair numbers");
    r.qpns.push_back(static_cast<std::uint32_t>(n));
  }
  std::string extra;
  if (in >> extra) malformed(text, peer, "trailing text");
  return r;
}

}  // namespace kumi::ib
