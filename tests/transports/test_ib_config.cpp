// The IB transport's hardware-independent parts: KUMI_IB_HCA filtering and ordering, and the RoCE
// GID choice over sysfs layouts (tests/transports/ib_fixtures/README.md says what each one is).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "transports/ib/gid_select.hpp"
#include "transports/ib/hca_filter.hpp"

namespace kumi::ib {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

struct Failure {
  kumiResult_t code = kumiSuccess;
  std::string message = "(no error)";
};
Failure failureOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  return {};
}

std::string portDir(const std::string& layout) { return std::string(KUMI_IB_FIXTURES) + "/" + layout + "/ports/1"; }
std::vector<GidEntry> table(const std::string& layout, int length = 16) {
  return readGidTable(portDir(layout), length);
}

Gid gid(const std::string& text) {
  auto g = parseGid(text);
  EXPECT_TRUE(g) << text;
  return g.value_or(Gid{});
}

GidPolicy family(int f) {
  GidPolicy p;
  p.family = f;
  return p;
}
GidPolicy range(const std::string& text) {
  GidPolicy p;
  p.range = parseAddrRange(text);
  return p;
}
GidPolicy forced(int index) {
  GidPolicy p;
  p.forcedIndex = index;
  return p;
}

// ---- KUMI_IB_HCA ----

TEST(HcaFilter, EmptySpecAdmitsEverythingUnordered) {
  for (const char* spec : {"", "  "}) {
    auto f = HcaFilter::parse(spec);
    EXPECT_TRUE(f.admits("mlx5_0", 1));
    EXPECT_TRUE(f.admits("rxe0", 2));
    EXPECT_TRUE(f.admitsAnyPortOf("bnxt_re3"));
    EXPECT_EQ(f.rank("mlx5_0", 1), HcaFilter::kUnlisted);
    EXPECT_TRUE(contains(f.describe(), "all RDMA devices")) << f.describe();
  }
}

TEST(HcaFilter, NamesMatchByPrefix) {
  auto f = HcaFilter::parse("mlx5");
  EXPECT_TRUE(f.admits("mlx5_0", 1));
  EXPECT_TRUE(f.admits("mlx5_1", 2));
  EXPECT_TRUE(f.admitsAnyPortOf("mlx5_11"));
  EXPECT_FALSE(f.admits("rxe0", 1));
  EXPECT_FALSE(f.admits("mlx4_0", 1));
  EXPECT_FALSE(f.admitsAnyPortOf("bnxt_re0"));
  // NCCL's prefix rule: a full name is a prefix of longer names too.
  auto one = HcaFilter::parse("mlx5_1");
  EXPECT_TRUE(one.admits("mlx5_1", 1));
  EXPECT_TRUE(one.admits("mlx5_10", 1));
  EXPECT_FALSE(one.admits("mlx5_0", 1));
  EXPECT_TRUE(contains(f.describe(), "names starting with mlx5")) << f.describe();
}

TEST(HcaFilter, EqualsSignMatchesExactly) {
  auto f = HcaFilter::parse("=mlx5_1,rxe0");
  EXPECT_TRUE(f.admits("mlx5_1", 1));
  EXPECT_FALSE(f.admits("mlx5_10", 1));
  EXPECT_FALSE(f.admits("mlx5_", 1));
  EXPECT_FALSE(f.admitsAnyPortOf("mlx5_10"));
  EXPECT_TRUE(f.admits("rxe0", 1));
  EXPECT_FALSE(f.admits("rxe01", 1));
  EXPECT_TRUE(contains(f.describe(), "only exactly mlx5_1, rxe0")) << f.describe();
}

TEST(HcaFilter, PortsNarrowAnEntry) {
  auto f = HcaFilter::parse("mlx5_0:1,mlx5_1");
  EXPECT_TRUE(f.admits("mlx5_0", 1));
  EXPECT_FALSE(f.admits("mlx5_0", 2));
  EXPECT_TRUE(f.admits("mlx5_1", 1));
  EXPECT_TRUE(f.admits("mlx5_1", 2));
  EXPECT_TRUE(f.admitsAnyPortOf("mlx5_0"));
  EXPECT_FALSE(f.admitsAnyPortOf("mlx5_2"));
  EXPECT_TRUE(contains(f.describe(), "mlx5_0 port 1, mlx5_1")) << f.describe();
}

TEST(HcaFilter, CaretExcludes) {
  auto f = HcaFilter::parse("^mlx5");
  EXPECT_FALSE(f.admits("mlx5_0", 1));
  EXPECT_FALSE(f.admitsAnyPortOf("mlx5_3"));
  EXPECT_TRUE(f.admits("rxe0", 1));
  EXPECT_TRUE(f.admitsAnyPortOf("bnxt_re0"));
  EXPECT_EQ(f.rank("rxe0", 1), HcaFilter::kUnlisted);
  EXPECT_TRUE(contains(f.describe(), "all RDMA devices but names starting with mlx5")) << f.describe();

  auto exact = HcaFilter::parse("^=mlx5_1");
  EXPECT_FALSE(exact.admits("mlx5_1", 1));
  EXPECT_TRUE(exact.admits("mlx5_10", 1));
  EXPECT_TRUE(exact.admits("mlx5_0", 1));
}

TEST(HcaFilter, ExcludingOnePortKeepsTheOthers) {
  auto f = HcaFilter::parse("^=mlx5_0:2");
  EXPECT_TRUE(f.admits("mlx5_0", 1));
  EXPECT_FALSE(f.admits("mlx5_0", 2));
  EXPECT_TRUE(f.admitsAnyPortOf("mlx5_0"));
  EXPECT_TRUE(f.admits("mlx5_1", 2));
  EXPECT_TRUE(contains(f.describe(), "all RDMA devices but exactly mlx5_0 port 2")) << f.describe();
}

TEST(HcaFilter, RankFollowsTheUsersOrder) {
  auto f = HcaFilter::parse("mlx5_2,mlx5_0");
  EXPECT_EQ(f.rank("mlx5_2", 1), 0);
  EXPECT_EQ(f.rank("mlx5_0", 1), 1);
  EXPECT_EQ(f.rank("mlx5_1", 1), HcaFilter::kUnlisted);
  // What the transport does with it: devices come in enumeration order and leave in the user's.
  std::vector<std::string> devices{"mlx5_0", "mlx5_1", "mlx5_2"};
  std::erase_if(devices, [&](const std::string& d) { return !f.admits(d, 1); });
  std::stable_sort(devices.begin(), devices.end(),
                   [&](const std::string& a, const std::string& b) { return f.rank(a, 1) < f.rank(b, 1); });
  EXPECT_EQ(devices, (std::vector<std::string>{"mlx5_2", "mlx5_0"}));

  auto ports = HcaFilter::parse("=mlx5_0:2,mlx5_1,mlx5_0:1");
  EXPECT_EQ(ports.rank("mlx5_0", 2), 0);
  EXPECT_EQ(ports.rank("mlx5_1", 1), 1);
  EXPECT_EQ(ports.rank("mlx5_0", 1), 2);
  EXPECT_EQ(ports.rank("mlx5_0", 3), HcaFilter::kUnlisted);
}

TEST(HcaFilter, BlanksAroundEntriesAreTrimmed) {
  auto f = HcaFilter::parse(" =mlx5_0 , mlx5_1:2 ");
  EXPECT_TRUE(f.admits("mlx5_0", 1));
  EXPECT_TRUE(f.admits("mlx5_1", 2));
  EXPECT_FALSE(f.admits("mlx5_1", 1));
}

TEST(HcaFilter, BadSpecsNameTheEntry) {
  struct Case {
    const char* spec;
    const char* names;  // the part of the message that points at the culprit
    const char* why;
  };
  const Case cases[] = {
      {"mlx5_0,,mlx5_1", "entry ''", "empty entry"},
      {"mlx5_0,", "entry ''", "empty entry"},
      {":1", "entry ':1'", "empty device name"},
      {"mlx5_0:", "entry 'mlx5_0:'", "port must be a number 1..255"},
      {"mlx5_0:0", "entry 'mlx5_0:0'", "port must be a number 1..255"},
      {"mlx5_0:256", "entry 'mlx5_0:256'", "port must be a number 1..255"},
      {"mlx5_0:99999", "entry 'mlx5_0:99999'", "port must be a number 1..255"},
      {"mlx5_0:-1", "entry 'mlx5_0:-1'", "port must be a number 1..255"},
      {"mlx5_0:x", "entry 'mlx5_0:x'", "port must be a number 1..255"},
      {"mlx5_0:1:2", "entry 'mlx5_0:1:2'", "port must be a number 1..255"},
      {"mlx5_0: 1", "entry 'mlx5_0: 1'", "port must be a number 1..255"},
      {"=^mlx5_0", "entry '^mlx5_0'", "not a device name"},
      {"mlx5_0,^mlx5_1", "entry '^mlx5_1'", "not a device name"},
      {"mlx5_0,=mlx5_1", "entry '=mlx5_1'", "not a device name"},
      {"mlx5_0;mlx5_1", "entry 'mlx5_0;mlx5_1'", "not a device name"},
      {"mlx5 0", "entry 'mlx5 0'", "not a device name"},
      {"^", "'^'", "no device after '^' or '='"},
      {"=", "'='", "no device after '^' or '='"},
      {"^=", "'^='", "no device after '^' or '='"},
  };
  for (const Case& c : cases) {
    Failure f = failureOf([&] { HcaFilter::parse(c.spec); });
    EXPECT_EQ(f.code, kumiInvalidArgument) << c.spec;
    EXPECT_TRUE(contains(f.message, std::string("KUMI_IB_HCA='") + c.spec + "'")) << f.message;
    EXPECT_TRUE(contains(f.message, c.names)) << c.spec << ": " << f.message;
    EXPECT_TRUE(contains(f.message, c.why)) << c.spec << ": " << f.message;
  }
}

// ---- Addresses ----

TEST(GidText, FormatsMappedIpv4AndCompressedIpv6) {
  EXPECT_EQ(formatGid(gid("0000:0000:0000:0000:0000:ffff:0a00:0001\n")), "::ffff:10.0.0.1");
  EXPECT_EQ(formatGid(gid("fe80:0000:0000:0000:5054:00ff:fe12:3456\n")), "fe80::5054:ff:fe12:3456");
  EXPECT_EQ(formatGid(gid("fd12:3456:789a:0001:0000:0000:0000:0015")), "fd12:3456:789a:1::15");
  EXPECT_EQ(formatGid(Gid{}), "::");
  // Only ::ffff:0:0/96 is IPv4; the deprecated IPv4-compatible form (::10.0.0.1) is not.
  EXPECT_FALSE(contains(formatGid(gid("::a00:1")), "ffff")) << formatGid(gid("::a00:1"));
}

TEST(GidText, ParsesOnlyGids) {
  Gid g = gid("fe80:0000:0000:0000:5054:00ff:fe12:3456\n");
  EXPECT_EQ(g[0], 0xfe);
  EXPECT_EQ(g[1], 0x80);
  EXPECT_EQ(g[15], 0x56);
  EXPECT_FALSE(parseGid(""));
  EXPECT_FALSE(parseGid("\n"));
  EXPECT_FALSE(parseGid("10.0.0.1"));
  EXPECT_FALSE(parseGid("fe80:0000:0000:0000:5054:00ff:fe12"));
  EXPECT_FALSE(parseGid("RoCE v2"));
}

TEST(AddrRange, ParsesBothFamilies) {
  AddrRange v4 = parseAddrRange("10.0.0.0/8");
  EXPECT_EQ(v4.family, AF_INET);
  EXPECT_EQ(v4.bits, 8);
  EXPECT_EQ(v4.prefix[0], 10);
  EXPECT_EQ(formatAddrRange(v4), "10.0.0.0/8");
  AddrRange v6 = parseAddrRange("fd00::/8");
  EXPECT_EQ(v6.family, AF_INET6);
  EXPECT_EQ(v6.bits, 8);
  EXPECT_EQ(v6.prefix[0], 0xfd);
  EXPECT_EQ(formatAddrRange(v6), "fd00::/8");
  EXPECT_EQ(parseAddrRange("0.0.0.0/0").bits, 0);
  EXPECT_EQ(parseAddrRange("::/128").bits, 128);
}

TEST(AddrRange, BadRangesNameTheText) {
  for (const char* text : {"10.0.0.0", "10.0.0/8", "10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/x", "/8",
                           "fd00::/-1", "junk/8", "10.0.0.0/8/8", "", "10.0.0.0 /8"}) {
    Failure f = failureOf([&] { parseAddrRange(text); });
    EXPECT_EQ(f.code, kumiInvalidArgument) << text;
    EXPECT_TRUE(contains(f.message, std::string("KUMI_IB_ADDR_RANGE='") + text + "'")) << f.message;
  }
}

TEST(AddrFamily, AcceptsNcclNamesAndShortForms) {
  for (const char* v4 : {"AF_INET", "af_inet", "inet", "INET", "4"}) EXPECT_EQ(parseAddrFamily(v4), AF_INET) << v4;
  for (const char* v6 : {"AF_INET6", "inet6", "6"}) EXPECT_EQ(parseAddrFamily(v6), AF_INET6) << v6;
  for (const char* bad : {"", "AF_INET7", "AF_UNIX", "46", "ipv4", " AF_INET"}) {
    Failure f = failureOf([&] { parseAddrFamily(bad); });
    EXPECT_EQ(f.code, kumiInvalidArgument) << bad;
    EXPECT_TRUE(contains(f.message, std::string("KUMI_IB_ADDR_FAMILY='") + bad + "'")) << f.message;
  }
}

// ---- Reading sysfs ----

TEST(GidTable, ReadsEntriesTypesAndNetdevs) {
  auto t = table("cx6-vf-pod");
  ASSERT_EQ(t.size(), 8u);
  EXPECT_EQ(t[0].index, 0);
  EXPECT_EQ(formatGid(t[0].gid), "fe80::b8ce:f6ff:fe3a:1c42");
  EXPECT_EQ(t[0].type, "IB/RoCE v1");
  EXPECT_EQ(t[1].type, "RoCE v2");
  EXPECT_EQ(t[3].index, 3);
  EXPECT_EQ(formatGid(t[3].gid), "::ffff:10.77.0.12");
  EXPECT_EQ(t[3].type, "RoCE v2");
  EXPECT_EQ(t[3].netdev, "net1");
  EXPECT_EQ(t[7].gid, Gid{});
  EXPECT_EQ(t[7].type, "");
}

TEST(GidTable, HolesDoNotEndTheTableButTheLengthDoes) {
  auto t = table("sparse");
  std::vector<int> indices;
  for (const auto& e : t) indices.push_back(e.index);
  EXPECT_EQ(indices, (std::vector<int>{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(t[12].index, 13);
  EXPECT_EQ(formatGid(t[12].gid), "2001:db8:20::5");
  EXPECT_EQ(t[12].type, "RoCE v2");
  EXPECT_EQ(t[12].netdev, "eth2");
  auto shorter = table("sparse", 7);
  ASSERT_EQ(shorter.size(), 6u);
  EXPECT_EQ(shorter.back().index, 6);
  EXPECT_TRUE(table("sparse", 0).empty());
  EXPECT_EQ(table("sparse", 1000).size(), t.size());
}

TEST(GidTable, MissingAttributesReadAsEmpty) {
  auto t = table("einval-types");
  ASSERT_EQ(t.size(), 4u);
  for (const auto& e : t) {
    EXPECT_EQ(e.type, "") << e.index;
    EXPECT_EQ(e.netdev, "eth0") << e.index;
  }
}

TEST(GidTable, ReadsAnInfinibandPort) {
  auto t = table("infiniband");
  ASSERT_EQ(t.size(), 8u);
  EXPECT_EQ(formatGid(t[0].gid), "fe80::c42:a103:65:7a3c");
  EXPECT_EQ(t[0].type, "IB/RoCE v1");
  EXPECT_EQ(t[0].netdev, "");
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_EQ(t[i].gid, Gid{}) << i;
  std::ifstream link(portDir("infiniband") + "/link_layer");
  std::string layer;
  std::getline(link, layer);
  EXPECT_EQ(layer, "InfiniBand");
}

TEST(GidTable, NoDirectoryIsAnEmptyTable) { EXPECT_TRUE(readGidTable(portDir("no-such-layout"), 8).empty()); }

TEST(GidTable, AGidFileWithoutAGidIsAnError) {
  auto dir = std::filesystem::temp_directory_path() / ("kumi-ib-gids-" + std::to_string(::getpid()));
  struct Cleanup {
    std::filesystem::path p;
    ~Cleanup() { std::filesystem::remove_all(p); }
  } cleanup{dir};
  std::filesystem::create_directories(dir / "gids");
  std::ofstream(dir / "gids" / "0") << "fe80:0000:0000:0000:5054:00ff:fe12:3456\n";
  std::ofstream(dir / "gids" / "1") << "garbage\n";
  Failure f = failureOf([&] { readGidTable(dir.string(), 4); });
  EXPECT_EQ(f.code, kumiSystemError);
  EXPECT_TRUE(contains(f.message, (dir / "gids" / "1").string())) << f.message;
  EXPECT_TRUE(contains(f.message, "'garbage'")) << f.message;
  Failure negative = failureOf([&] { readGidTable(dir.string(), -1); });
  EXPECT_EQ(negative.code, kumiInvalidArgument);
}

// ---- Choosing ----

TEST(SelectGid, PodVfTakesTheIpv4RoceV2Entry) {
  GidChoice c = selectGid(table("cx6-vf-pod"), GidPolicy{}, "mlx5_3 port 1");
  EXPECT_EQ(c.index, 3);
  EXPECT_EQ(c.text, "::ffff:10.77.0.12");
  EXPECT_EQ(c.gid, gid("::ffff:10.77.0.12"));
  EXPECT_EQ(c.type, "RoCE v2");
  EXPECT_EQ(c.netdev, "net1");
  EXPECT_EQ(c.reason,
            "index 3 (::ffff:10.77.0.12, RoCE v2, net1): first IPv4 RoCE v2 entry; "
            "skipped 0 (link-local), 1 (link-local), 2 (IB/RoCE v1), 4 unset");
}

TEST(SelectGid, RecordedSoftRoceTableTakesItsIpv4Entry) {
  // Recorded from the VM lane's rxe0 (README in the fixture): slot 0 link-local, slot 1 IPv4,
  // slots 2-7 unset with unreadable types.
  GidChoice c = selectGid(table("rxe-dummy-recorded", 8), GidPolicy{}, "rxe0 port 1");
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.text, "::ffff:10.77.0.1");
  EXPECT_EQ(c.type, "RoCE v2");
  EXPECT_EQ(c.netdev, "dum0");
  EXPECT_TRUE(contains(c.reason, "skipped 0 (link-local)")) << c.reason;
}

TEST(SelectGid, RoceVersionPreferenceCanBeV1) {
  GidPolicy p;
  p.rocePreferred = 1;
  GidChoice c = selectGid(table("cx6-vf-pod"), p, "mlx5_3 port 1");
  EXPECT_EQ(c.index, 2);
  EXPECT_TRUE(contains(c.reason, ": first IPv4 IB/RoCE v1 entry; skipped 0 (link-local), 1 (link-local), 3 (RoCE v2)"))
      << c.reason;
  // Only v2 entries: v2 it is, and the reason says v1 was wanted.
  std::vector<GidEntry> v2only{{0, gid("::ffff:10.1.1.1"), "RoCE v2", "eth0"}};
  EXPECT_TRUE(contains(selectGid(v2only, p, "x").reason, "first IPv4 RoCE v2 entry (no RoCE v1 entry)"));
}

TEST(SelectGid, SparseTableFindsEntriesPastTheHoles) {
  GidChoice c = selectGid(table("sparse"), GidPolicy{}, "mlx5_0 port 1");
  EXPECT_EQ(c.index, 7);
  EXPECT_EQ(c.text, "::ffff:10.20.0.5");
  EXPECT_EQ(c.reason,
            "index 7 (::ffff:10.20.0.5, RoCE v2, eth2): first IPv4 RoCE v2 entry; skipped 0 (link-local), "
            "1 (link-local), 6 (IB/RoCE v1), 12 (IPv6), 13 (IPv6), 9 unset");
  GidChoice v6 = selectGid(table("sparse"), family(AF_INET6), "mlx5_0 port 1");
  EXPECT_EQ(v6.index, 13);
  EXPECT_EQ(v6.text, "2001:db8:20::5");
  EXPECT_TRUE(contains(v6.reason, ": first IPv6 RoCE v2 entry; skipped 0 (link-local), 1 (link-local), 6 (IPv4), "
                                  "7 (IPv4), 12 (IB/RoCE v1), 9 unset"))
      << v6.reason;
}

TEST(SelectGid, UnreadableTypesAreUsableAndSaidSo) {
  GidChoice c = selectGid(table("einval-types"), GidPolicy{}, "mlx5_1 port 1");
  EXPECT_EQ(c.index, 2);
  EXPECT_EQ(c.type, "");
  EXPECT_EQ(c.reason,
            "index 2 (::ffff:10.0.3.7, type unreadable, eth0): first IPv4 entry; its GID type is unreadable, "
            "assumed usable; skipped 0 (link-local), 1 (link-local), 3 (higher index)");
}

TEST(SelectGid, UnreadableTypeRanksBelowKnownV2AndAboveV1) {
  std::vector<GidEntry> t{{2, gid("::ffff:10.0.0.2"), "", "eth0"}, {3, gid("::ffff:10.0.0.2"), "RoCE v2", "eth0"}};
  GidChoice c = selectGid(t, GidPolicy{}, "x");
  EXPECT_EQ(c.index, 3);
  EXPECT_TRUE(contains(c.reason, "skipped 2 (type unreadable)")) << c.reason;
  std::vector<GidEntry> u{{2, gid("::ffff:10.0.0.2"), "IB/RoCE v1", "eth0"}, {3, gid("::ffff:10.0.0.2"), "", "eth0"}};
  GidChoice d = selectGid(u, GidPolicy{}, "x");
  EXPECT_EQ(d.index, 3);
  EXPECT_TRUE(contains(d.reason, "type unreadable")) << d.reason;
  EXPECT_TRUE(contains(d.reason, "skipped 2 (IB/RoCE v1)")) << d.reason;
}

TEST(SelectGid, PreferredFamilyBeatsRoceVersion) {
  // An IPv4 v1 entry beats an IPv6 v2 one under the default family: the family must match the peers'.
  std::vector<GidEntry> t{{1, gid("fd00::1"), "RoCE v2", "eth0"}, {2, gid("::ffff:10.0.0.2"), "IB/RoCE v1", "eth0"}};
  EXPECT_EQ(selectGid(t, GidPolicy{}, "x").index, 2);
  EXPECT_EQ(selectGid(t, family(AF_INET6), "x").index, 1);
  // IPv4-compatible (not mapped) GIDs are IPv6.
  std::vector<GidEntry> compat{{1, gid("::a00:1"), "RoCE v2", "eth0"}, {2, gid("::ffff:10.0.0.1"), "RoCE v2", "eth0"}};
  EXPECT_EQ(selectGid(compat, GidPolicy{}, "x").index, 2);
  EXPECT_EQ(selectGid(compat, family(AF_INET6), "x").index, 1);
}

TEST(SelectGid, RangePicksTheSubnet) {
  auto t = table("two-subnets");
  EXPECT_EQ(selectGid(t, GidPolicy{}, "mlx5_0 port 1").index, 3);
  GidChoice c = selectGid(t, range("192.168.1.0/24"), "mlx5_0 port 1");
  EXPECT_EQ(c.index, 5);
  EXPECT_EQ(c.netdev, "eth0.100");
  EXPECT_EQ(c.reason,
            "index 5 (::ffff:192.168.1.21, RoCE v2, eth0.100): first IPv4 RoCE v2 entry in 192.168.1.0/24; "
            "skipped 0 (link-local), 1 (link-local), 2 (outside 192.168.1.0/24), 3 (outside 192.168.1.0/24), "
            "4 (IB/RoCE v1), 2 unset");
  EXPECT_EQ(selectGid(t, range("10.0.0.0/8"), "m").index, 3);
  EXPECT_EQ(selectGid(t, range("10.0.0.21/32"), "m").index, 3);
  EXPECT_EQ(selectGid(t, range("192.168.0.0/23"), "m").index, 5);  // a prefix ending inside a byte
  EXPECT_EQ(selectGid(t, range("192.168.1.99/24"), "m").index, 5);  // host bits ignored
  EXPECT_EQ(selectGid(t, range("0.0.0.0/0"), "m").index, 3);
}

TEST(SelectGid, RangeWithoutMatchNamesRangeAndEntries) {
  auto t = table("two-subnets");
  for (const char* r : {"172.16.0.0/12", "192.168.2.0/23", "10.0.0.22/32", "fd00::/8"}) {
    Failure f = failureOf([&] { selectGid(t, range(r), "mlx5_0 port 1"); });
    EXPECT_EQ(f.code, kumiInvalidArgument) << r;
    EXPECT_TRUE(contains(f.message, "mlx5_0 port 1")) << f.message;
    EXPECT_TRUE(contains(f.message, std::string("KUMI_IB_ADDR_RANGE=") + r)) << f.message;
    EXPECT_TRUE(contains(f.message, "3 ::ffff:10.0.0.21 (RoCE v2, eth0)")) << f.message;
    EXPECT_TRUE(contains(f.message, "5 ::ffff:192.168.1.21 (RoCE v2, eth0.100)")) << f.message;
  }
}

TEST(SelectGid, RangeFamilyOverridesTheFamilySetting) {
  // An IPv6 range with the default (IPv4) family still selects IPv6 entries.
  GidChoice c = selectGid(table("ipv6-only"), range("fd12::/16"), "m");
  EXPECT_EQ(c.index, 3);
  EXPECT_FALSE(contains(c.reason, "no IPv4 entry")) << c.reason;
}

TEST(SelectGid, Ipv6OnlyHostFallsBackToIpv6UnderTheDefaultFamily) {
  GidChoice c = selectGid(table("ipv6-only"), GidPolicy{}, "mlx5_0 port 1");
  EXPECT_EQ(c.index, 3);
  EXPECT_EQ(c.text, "fd12:3456:789a:1::15");
  EXPECT_EQ(c.reason,
            "index 3 (fd12:3456:789a:1::15, RoCE v2, eth1): no IPv4 entry; first IPv6 RoCE v2 entry; "
            "skipped 0 (link-local), 1 (link-local), 2 (IB/RoCE v1), 2 unset");
  GidChoice v6 = selectGid(table("ipv6-only"), family(AF_INET6), "mlx5_0 port 1");
  EXPECT_EQ(v6.index, 3);
  EXPECT_TRUE(contains(v6.reason, ": first IPv6 RoCE v2 entry; skipped")) << v6.reason;
  // And the other way round: AF_INET6 on an IPv4-only VF.
  GidChoice v4 = selectGid(table("cx6-vf-pod"), family(AF_INET6), "mlx5_3 port 1");
  EXPECT_EQ(v4.index, 3);
  EXPECT_TRUE(contains(v4.reason, ": no IPv6 entry; first IPv4 RoCE v2 entry;")) << v4.reason;
}

TEST(SelectGid, ForcedIndexWins) {
  GidChoice c = selectGid(table("cx6-vf-pod"), forced(1), "mlx5_3 port 1");
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.text, "fe80::b8ce:f6ff:fe3a:1c42");
  EXPECT_EQ(c.reason,
            "index 1 (fe80::b8ce:f6ff:fe3a:1c42, RoCE v2, net1): forced by KUMI_IB_GID_INDEX (link-local: not "
            "routable)");
  EXPECT_EQ(selectGid(table("cx6-vf-pod"), forced(2), "m").index, 2);
  // Over a range and a family too.
  GidPolicy p = range("10.0.0.0/8");
  p.forcedIndex = 5;
  p.family = AF_INET6;
  GidChoice r = selectGid(table("two-subnets"), p, "m");
  EXPECT_EQ(r.index, 5);
  EXPECT_EQ(r.reason, "index 5 (::ffff:192.168.1.21, RoCE v2, eth0.100): forced by KUMI_IB_GID_INDEX");
}

TEST(SelectGid, ForcedIndexMustNameASetEntry) {
  struct Case {
    const char* layout;
    int index;
  };
  // Unset slot, missing gids file, past the table.
  for (Case c : {Case{"cx6-vf-pod", 5}, Case{"sparse", 5}, Case{"cx6-vf-pod", 300}, Case{"empty", 0}}) {
    Failure f = failureOf([&] { selectGid(table(c.layout), forced(c.index), "mlx5_3 port 1"); });
    EXPECT_EQ(f.code, kumiInvalidArgument) << c.layout << " " << c.index;
    std::string expected = "mlx5_3 port 1: KUMI_IB_GID_INDEX=" + std::to_string(c.index) + " names no set GID";
    EXPECT_TRUE(contains(f.message, expected)) << f.message;
  }
  Failure f = failureOf([&] { selectGid(table("cx6-vf-pod"), forced(6), "mlx5_3 port 1"); });
  EXPECT_TRUE(contains(f.message, "3 ::ffff:10.77.0.12 (RoCE v2, net1), 4 unset")) << f.message;
}

TEST(SelectGid, OnlyLinkLocalIsAnError) {
  Failure f = failureOf([] { selectGid(table("infiniband"), GidPolicy{}, "mlx5_0 port 1"); });
  EXPECT_EQ(f.code, kumiSystemError);
  EXPECT_TRUE(contains(f.message, "mlx5_0 port 1: only link-local GIDs")) << f.message;
  EXPECT_TRUE(contains(f.message, "0 fe80::c42:a103:65:7a3c (IB/RoCE v1), 7 unset")) << f.message;
  EXPECT_TRUE(contains(f.message, "KUMI_IB_GID_INDEX")) << f.message;
  EXPECT_EQ(selectGid(table("infiniband"), forced(0), "m").index, 0);
}

TEST(SelectGid, EmptyTableIsAClearError) {
  Failure f = failureOf([] { selectGid(table("empty"), GidPolicy{}, "rxe0 port 1"); });
  EXPECT_EQ(f.code, kumiSystemError);
  EXPECT_TRUE(contains(f.message, "rxe0 port 1: no GID set (4 unset)")) << f.message;
  EXPECT_TRUE(contains(f.message, "IP address")) << f.message;
  Failure none = failureOf([] { selectGid({}, GidPolicy{}, "rxe0 port 1"); });
  EXPECT_TRUE(contains(none.message, "rxe0 port 1: no GID set (no gids/N file readable)")) << none.message;
}

}  // namespace
}  // namespace kumi::ib
