#include "comm/call_stamp.hpp"

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/types.hpp"

namespace kumi {
namespace {
// lo: count (56 bits) | kind (4) | type (4); hi: sequence (32) | root (24) | op (4) | device (1)
// | reserved (3).
constexpr std::uint64_t kCountMask = (1ull << 56) - 1;
constexpr std::uint64_t kRootMask = (1ull << 24) - 1;
constexpr std::uint64_t kDeviceBit = 1ull << 60;

bool reduces(Collective c) { return c == Collective::AllReduce || c == Collective::ReduceScatter || c == Collective::Reduce; }
}  // namespace

CallStamp stampCall(const CallArgs& a, std::uint64_t seq, int sender, bool device) {
  Collective kind = a.coll == Collective::Recv ? Collective::Send : a.coll;  // both ends of a pair stamp alike
  std::uint64_t count = a.coll == Collective::Barrier ? 0 : a.count & kCountMask;
  std::uint64_t type = a.coll == Collective::Barrier ? 0 : static_cast<std::uint64_t>(a.type) & 0xf;
  std::uint64_t op = reduces(a.coll) ? static_cast<std::uint64_t>(a.op) & 0xf : 0;
  std::uint64_t root = 0;
  if (a.coll == Collective::Broadcast || a.coll == Collective::Reduce) root = static_cast<std::uint64_t>(a.root);
  if (kind == Collective::Send) root = static_cast<std::uint64_t>(sender);
  CallStamp s;
  s.lo = count | (static_cast<std::uint64_t>(kind) & 0xf) << 56 | type << 60;
  // A send/recv pair runs one direct schedule whatever the memory: its ends may differ.
  const bool planned = device && kind != Collective::Send;
  s.hi = (seq & 0xffffffffu) | (root & kRootMask) << 32 | op << 56 | (planned ? kDeviceBit : 0);
  return s;
}

bool differsOnlyInMemory(const CallStamp& a, const CallStamp& b) {
  return a.lo == b.lo && (a.hi ^ b.hi) == kDeviceBit;
}

std::string describeStamp(const CallStamp& s) {
  const auto kind = static_cast<Collective>((s.lo >> 56) & 0xf);
  const auto count = s.lo & kCountMask;
  const auto type = static_cast<kumiDataType_t>(s.lo >> 60);
  const auto seq = s.hi & 0xffffffffu;
  const auto root = (s.hi >> 32) & kRootMask;
  const auto op = static_cast<kumiRedOp_t>((s.hi >> 56) & 0xf);
  // (A receive stamps as its send, so Recv never appears.)
  if (kind == Collective::Recv || kind > Collective::AllToAll)
    return cat("an unknown call (stamp ", s.lo, ":", s.hi, ")");
  if (kind == Collective::Send)
    return cat("send/recv count=", count, ' ', typeName(type), " from rank ", root, ", #", seq, " between them");
  const char* memory = s.hi & kDeviceBit ? ", device buffers" : "";
  if (kind == Collective::Barrier) return cat("barrier", memory, ", #", seq);
  std::string d = cat(collectiveName(kind), " count=", count, ' ', typeName(type));
  if (reduces(kind)) d += cat(' ', opName(op));
  if (kind == Collective::Broadcast || kind == Collective::Reduce) d += cat(" root=", root);
  return d + cat(memory, ", #", seq);
}

}  // namespace kumi
