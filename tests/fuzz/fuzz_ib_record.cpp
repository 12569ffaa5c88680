// The RDMA connection record a peer sends over the bootstrap connection: any bytes either parse
// into a record within kumi's limits that formats back to itself, or are refused with
// kumi::Error; nothing else escapes (no std::out_of_range, no crash).
#include "fuzz_input.hpp"
#include "core/error.hpp"
#include "transports/ib/connection_record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kumi::ib::ConnectionRecord r;
  try {
    r = kumi::ib::parseRecord(text, 1);
  } catch (const kumi::Error&) {
    return 0;
  }
  if (r.slots < 2 || r.slots > 256 || r.qpns.empty() || r.qpns.size() > 16 || r.mtu < 1 || r.mtu > 5) __builtin_trap();
  const auto again = kumi::ib::parseRecord(kumi::ib::formatRecord(r), 1);
  if (again.ring != r.ring || again.qpns != r.qpns || again.gid != r.gid || again.slotBytes != r.slotBytes) __builtin_trap();
  return 0;
}
