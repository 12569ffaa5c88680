// RoCE GID selection: which entry of a port's GID table the IB transport addresses its queue pairs
// with. Pure code over sysfs files, no verbs, so that the rules can be tested on recorded layouts.
//
// Rules of selectGid:
//  - Unset entries (all-zero GID) and link-local ones (fe80::/10) are never chosen automatically:
//    link-local GIDs are not routable, and a pod's VF often has nothing else set on some slots.
//  - An entry is IPv4 when its GID is IPv4-mapped (::ffff:a.b.c.d), IPv6 otherwise.
//  - With a range (KUMI_IB_ADDR_RANGE) only entries inside it qualify; none inside is an error
//    naming the range and the entries. The range's own family then overrides `family`.
//  - Without a range, entries of `family` (KUMI_IB_ADDR_FAMILY) come first. When the table has
//    none, the best entry of the other family is chosen and the reason says so. This departs from
//    NCCL, which in that case silently keeps index 0 (a link-local GID): a routable GID of the
//    other family is what such a host (e.g. IPv6-only) can actually reach its peers with.
//  - Then by RoCE version: `rocePreferred` (v2 by default: routable and ECMP-hashable), then
//    entries whose type could not be read (usable; real sysfs answers EINVAL for some slots and
//    some containers hide the files), then the other version. Then the lowest index.
//  - `forcedIndex` (KUMI_IB_GID_INDEX) wins over all of this, link-local included, but must name a
//    set entry of the table.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kumi::ib {

using Gid = std::array<std::uint8_t, 16>;

// An address prefix: AF_INET keeps the 4 address bytes in prefix[0..3], AF_INET6 all 16.
struct AddrRange {
  int family;
  std::array<std::uint8_t, 16> prefix;
  int bits;
};
// "10.0.0.0/8", "fd00::/8"; host bits past the prefix are ignored. Throws naming the text.
AddrRange parseAddrRange(std::string_view text);
// "AF_INET" / "AF_INET6", also "inet"/"inet6" and "4"/"6", any case. Throws otherwise.
int parseAddrFamily(std::string_view text);
std::string formatAddrRange(const AddrRange& range);  // "10.0.0.0/8"

struct GidPolicy {
  int forcedIndex = -1;             // KUMI_IB_GID_INDEX
  int family = AF_INET;             // KUMI_IB_ADDR_FAMILY (NCCL's default family is IPv4 too)
  std::optional<AddrRange> range;   // KUMI_IB_ADDR_RANGE
  int rocePreferred = 2;            // KUMI_IB_ROCE_VERSION_NUM
};

struct GidEntry {
  int index;
  Gid gid;
  std::string type;  // "RoCE v2", "IB/RoCE v1", or "" when unreadable
  std::string netdev;
};

struct GidChoice {
  int index;
  Gid gid;
  std::string text;  // formatGid(gid)
  std::string type;
  std::string netdev;
  std::string reason;  // one line for the INFO log: why this one, what was skipped
};

// Reads a port's GID table from its sysfs directory, e.g. /sys/class/infiniband/rxe0/ports/1
// (gids/N, gid_attrs/types/N, gid_attrs/ndevs/N), slots 0..tableLength-1. A missing or unreadable
// gids/N is a hole and is left out; unset (all-zero) slots are kept so that errors can count them.
// Plain reads only, no process spawned. Throws naming the file when a GID file holds no GID.
std::vector<GidEntry> readGidTable(const std::string& portDir, int tableLength);

// Throws kumi::Error naming `what` (e.g. "rxe0 port 1") and listing the entries seen when nothing
// fits the policy.
GidChoice selectGid(const std::vector<GidEntry>& table, const GidPolicy& policy, const std::string& what);

// IPv4-mapped GIDs as "::ffff:10.0.0.1", others in compressed IPv6 form.
std::string formatGid(const Gid& gid);
// "fe80:0000:0000:0000:5054:00ff:fe12:3456" (sysfs form, newline allowed) -> bytes.
std::optional<Gid> parseGid(std::string_view text);

}  // namespace kumi::ib
