#include "transports/ib/gid_select.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <tuple>

#include "core/error.hpp"
#include "core/strings.hpp"
#include "core/text_file.hpp"

namespace kumi::ib {

namespace {

bool isUnset(const Gid& g) {
  return std::all_of(g.begin(), g.end(), [](std::uint8_t b) { return b == 0; });
}
bool isLinkLocal(const Gid& g) { return g[0] == 0xfe && (g[1] & 0xc0) == 0x80; }
bool isV4Mapped(const Gid& g) {
  return std::all_of(g.begin(), g.begin() + 10, [](std::uint8_t b) { return b == 0; }) && g[10] == 0xff &&
         g[11] == 0xff;
}
int familyOf(const Gid& g) { return isV4Mapped(g) ? AF_INET : AF_INET6; }
const char* familyName(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

// 2 for "RoCE v2", 1 for "IB/RoCE v1" (or the bare "RoCE v1" some drivers print), 0 unknown.
int roceVersion(const std::string& type) {
  if (type == "RoCE v2") return 2;
  if (type == "IB/RoCE v1" || type == "RoCE v1") return 1;
  return 0;
}

bool prefixMatches(const std::uint8_t* addr, const AddrRange& r) {
  int full = r.bits / 8, rest = r.bits % 8;
  if (!std::equal(addr, addr + full, r.prefix.begin())) return false;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (addr[full] & mask) == (r.prefix[full] & mask);
}

bool inRange(const Gid& g, const AddrRange& r) {
  if (familyOf(g) != r.family) return false;
  return prefixMatches(r.family == AF_INET ? g.data() + 12 : g.data(), r);
}

std::string describeEntry(const GidEntry& e) {
  return cat(e.index, " ", formatGid(e.gid), " (", e.type.empty() ? "type unreadable" : e.type,
             e.netdev.empty() ? "" : ", ", e.netdev, ")");
}

std::string listEntries(const std::vector<GidEntry>& table) {
  std::string out;
  int unset = 0;
  for (const GidEntry& e : table) {
    if (isUnset(e.gid)) {
      ++unset;
      continue;
    }
    out += out.empty() ? "" : ", ";
    out += describeEntry(e);
  }
  if (unset) out += cat(out.empty() ? "" : ", ", unset, " unset");
  return out.empty() ? "none" : out;
}

}  // namespace

std::optional<Gid> parseGid(std::string_view text) {
  std::string s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  Gid g{};
  if (s.empty() || ::inet_pton(AF_INET6, s.c_str(), g.data()) != 1) return std::nullopt;
  return g;
}

std::string formatGid(const Gid& g) {
  char buf[INET6_ADDRSTRLEN];
  if (isV4Mapped(g)) {
    ::inet_ntop(AF_INET, g.data() + 12, buf, sizeof buf);
    return cat("::ffff:", buf);
  }
  ::inet_ntop(AF_INET6, g.data(), buf, sizeof buf);
  return buf;
}

AddrRange parseAddrRange(std::string_view textView) {
  const std::string text(textView);
  auto bad = [&](const char* why) { fail(kumiInvalidArgument, "KUMI_IB_ADDR_RANGE='", text, "': ", why); };
  auto slash = text.find('/');
  if (slash == std::string::npos) bad("expected ADDRESS/BITS, e.g. 10.0.0.0/8 or fd00::/8");
  std::string addr = text.substr(0, slash), bitsText = text.substr(slash + 1);
  AddrRange r{};
  r.family = addr.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (::inet_pton(r.family, addr.c_str(), r.prefix.data()) != 1)
    bad(r.family == AF_INET ? "not an IPv4 address before '/'" : "not an IPv6 address before '/'");
  int maxBits = r.family == AF_INET ? 32 : 128;
  bool digits = !bitsText.empty() && bitsText.size() <= 3;
  for (char c : bitsText) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (!digits || std::stoi(bitsText) > maxBits)
    bad(r.family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128");
  r.bits = std::stoi(bitsText);
  return r;
}

std::string formatAddrRange(const AddrRange& r) {
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(r.family, r.prefix.data(), buf, sizeof buf);
  return cat(buf, "/", r.bits);
}

int parseAddrFamily(std::string_view textView) {
  std::string t(textView);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "af_inet" || t == "inet" || t == "4") return AF_INET;
  if (t == "af_inet6" || t == "inet6" || t == "6") return AF_INET6;
  fail(kumiInvalidArgument, "KUMI_IB_ADDR_FAMILY='", textView, "': expected AF_INET or AF_INET6");
}

std::vector<GidEntry> readGidTable(const std::string& portDir, int tableLength) {
  KUMI_REQUIRE_ARG(tableLength >= 0, "GID table length ", tableLength, " of ", portDir);
  std::vector<GidEntry> table;
  for (int i = 0; i < tableLength; ++i) {
    std::string gidPath = cat(portDir, "/gids/", i);
    auto text = readFirstLine(gidPath);
    if (!text) continue;  // a hole: later slots may still be set
    auto gid = parseGid(*text);
    if (!gid) fail(kumiSystemError, gidPath, " holds '", *text, "', not a GID");
    GidEntry e{i, *gid, "", ""};
    // Unset slots answer EINVAL for their attributes anyway; not asking keeps the scan cheap.
    if (!isUnset(e.gid)) {
      e.type = readFirstLine(cat(portDir, "/gid_attrs/types/", i)).value_or("");
      e.netdev = readFirstLine(cat(portDir, "/gid_attrs/ndevs/", i)).value_or("");
    }
    table.push_back(std::move(e));
  }
  return table;
}

GidChoice selectGid(const std::vector<GidEntry>& table, const GidPolicy& policy, const std::string& what) {
  auto choice = [](const GidEntry& e, std::string reason) {
    return GidChoice{e.index, e.gid, formatGid(e.gid), e.type, e.netdev, std::move(reason)};
  };
  auto typeText = [](const GidEntry& e) { return e.type.empty() ? std::string("type unreadable") : e.type; };
  auto header = [&](const GidEntry& e) {
    return cat("index ", e.index, " (", formatGid(e.gid), ", ", typeText(e), e.netdev.empty() ? "" : ", ",
               e.netdev, ")");
  };

  if (policy.forcedIndex >= 0) {
    for (const GidEntry& e : table)
      if (e.index == policy.forcedIndex && !isUnset(e.gid))
        return choice(e, cat(header(e), ": forced by KUMI_IB_GID_INDEX",
                             isLinkLocal(e.gid) ? " (link-local: not routable)" : ""));
    fail(kumiInvalidArgument, what, ": KUMI_IB_GID_INDEX=", policy.forcedIndex,
         " names no set GID (unset, unreadable or past the table); entries: ", listEntries(table));
  }

  const int family = policy.range ? policy.range->family : policy.family;
  const std::string rangeText = policy.range ? formatAddrRange(*policy.range) : "";
  auto versionRank = [&](const GidEntry& e) {
    int v = roceVersion(e.type);
    return v == policy.rocePreferred ? 0 : v == 0 ? 1 : 2;
  };
  auto key = [&](const GidEntry& e) { return std::make_tuple(familyOf(e.gid) != family, versionRank(e), e.index); };

  const GidEntry* best = nullptr;
  bool anySet = false, anyRoutable = false;
  for (const GidEntry& e : table) {
    if (isUnset(e.gid)) continue;
    anySet = true;
    if (isLinkLocal(e.gid)) continue;
    anyRoutable = true;
    if (policy.range && !inRange(e.gid, *policy.range)) continue;
    if (!best || key(e) < key(*best)) best = &e;
  }
  if (!best) {
    if (!anySet)
      fail(kumiSystemError, what, ": no GID set (", table.empty() ? "no gids/N file readable" : listEntries(table),
           "); give the port's network interface an IP address");
    if (!anyRoutable)
      fail(kumiSystemError, what, ": only link-local GIDs, which do not route (", listEntries(table),
           "); give the port's network interface an IP address, or force one with KUMI_IB_GID_INDEX");
    fail(kumiInvalidArgument, what, ": no GID inside KUMI_IB_ADDR_RANGE=", rangeText, "; entries: ",
         listEntries(table));
  }

  std::string why;
  const bool fellBack = familyOf(best->gid) != family;
  if (fellBack) why = cat("no ", familyName(family), " entry; ");
  why += cat("first ", familyName(familyOf(best->gid)), best->type.empty() ? "" : " ", best->type, " entry",
             policy.range ? " in " : "", rangeText);
  if (versionRank(*best) == 2) why += cat(" (no RoCE v", policy.rocePreferred, " entry)");
  if (roceVersion(best->type) == 0)
    why += best->type.empty() ? "; its GID type is unreadable, assumed usable"
                              : "; its GID type is not RoCE v1 or v2, assumed usable";
  std::string skipped;
  int unset = 0;
  for (const GidEntry& e : table) {
    if (&e == best) continue;
    if (isUnset(e.gid)) {
      ++unset;
      continue;
    }
    std::string label;
    if (isLinkLocal(e.gid)) label = "link-local";
    else if (policy.range && !inRange(e.gid, *policy.range)) label = cat("outside ", rangeText);
    else if (familyOf(e.gid) != familyOf(best->gid)) label = familyName(familyOf(e.gid));
    else if (versionRank(e) != versionRank(*best)) label = typeText(e);
    else label = "higher index";
    skipped += cat(skipped.empty() ? "" : ", ", e.index, " (", label, ")");
  }
  if (unset) skipped += cat(skipped.empty() ? "" : ", ", unset, " unset");
  if (!skipped.empty()) why += cat("; skipped ", skipped);
  return choice(*best, cat(header(*best), ": ", why));
}

}  // namespace kumi::ib
