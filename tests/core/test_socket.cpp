// Socket plumbing: host:port parsing, resolution, NCCL_SOCKET_IFNAME matching, listening on a
// busy port, and choosing the address to listen on.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

#include <kumi/kumi.hpp>

#include "core/socket.hpp"

namespace {

using kumi::test::errorOf;

kumi::SockAddr ipv4(const char* host, int port) {
  kumi::SockAddr a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::inet_pton(AF_INET, host, &in->sin_addr), 1);
  a.length = sizeof(sockaddr_in);
  return a;
}

TEST(SplitHostPort, Ipv4AndNames) {
  auto [h, p] = kumi::splitHostPort("127.0.0.1:80", "KUMI_STORE");
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 80);
  auto [h2, p2] = kumi::splitHostPort("node-17.cluster:29500", "KUMI_STORE");
  EXPECT_EQ(h2, "node-17.cluster");
  EXPECT_EQ(p2, 29500);
  auto [h3, p3] = kumi::splitHostPort("localhost:0", "KUMI_STORE");
  EXPECT_EQ(h3, "localhost");
  EXPECT_EQ(p3, 0);
  auto [h4, p4] = kumi::splitHostPort("h:65535", "KUMI_STORE");
  EXPECT_EQ(h4, "h");
  EXPECT_EQ(p4, 65535);
}

TEST(SplitHostPort, BracketedIpv6) {
  auto [h, p] = kumi::splitHostPort("[::1]:29500", "KUMI_STORE");
  EXPECT_EQ(h, "::1");
  EXPECT_EQ(p, 29500);
  auto [h2, p2] = kumi::splitHostPort("[fe80::1:2]:7", "KUMI_STORE");
  EXPECT_EQ(h2, "fe80::1:2");
  EXPECT_EQ(p2, 7);
}

TEST(SplitHostPort, PortOutOfRange) {
  std::string msg = errorOf([] { kumi::splitHostPort("host:99999", "KUMI_STORE"); }, kumiInvalidArgument);
  EXPECT_NE(msg.find("KUMI_STORE"), std::string::npos) << msg;
  EXPECT_NE(msg.find("99999"), std::string::npos) << msg;
  for (const char* bad : {"host:65536", "host:-1", "host:abc", "host:", "host:80x", "[::1]:99999"}) {
    msg = errorOf([&] { kumi::splitHostPort(bad, "KUMI_STORE"); }, kumiInvalidArgument);
    EXPECT_NE(msg.find(bad), std::string::npos) << "the message should quote the input: " << msg;
  }
}

TEST(SplitHostPort, MissingPort) {
  std::string msg = errorOf([] { kumi::splitHostPort("noport", "KUMI_STORE"); }, kumiInvalidArgument);
  EXPECT_NE(msg.find("noport"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host:port"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KUMI_STORE"), std::string::npos) << msg;
  for (const char* bad : {"", ":80", "[::1]", "[::1]:", "[::1]80"})
    errorOf([&] { kumi::splitHostPort(bad, "KUMI_STORE"); }, kumiInvalidArgument);
}

TEST(SplitHostPort, UnbracketedIpv6AsksForBrackets) {
  std::string msg = errorOf([] { kumi::splitHostPort("::1:5", "KUMI_STORE"); }, kumiInvalidArgument);
  EXPECT_NE(msg.find("[addr]:port"), std::string::npos) << "should tell to use brackets: " << msg;
  EXPECT_NE(msg.find("::1:5"), std::string::npos) << msg;
}

TEST(MatchesIfname, Prefixes) {
  EXPECT_TRUE(kumi::matchesIfname("eth", "eth0"));
  EXPECT_TRUE(kumi::matchesIfname("eth", "eth"));
  EXPECT_FALSE(kumi::matchesIfname("eth", "ens3"));
  EXPECT_FALSE(kumi::matchesIfname("eth0", "eth"));
  EXPECT_TRUE(kumi::matchesIfname("eth,ib", "ib0"));
  EXPECT_TRUE(kumi::matchesIfname("eth,ib", "eth1"));
  EXPECT_FALSE(kumi::matchesIfname("eth,ib", "lo"));
  EXPECT_TRUE(kumi::matchesIfname("ib,,eth", "eth2")) << "empty items are ignored";
}

TEST(MatchesIfname, Exclusion) {
  EXPECT_FALSE(kumi::matchesIfname("^docker,lo", "docker0"));
  EXPECT_FALSE(kumi::matchesIfname("^docker,lo", "lo"));
  EXPECT_TRUE(kumi::matchesIfname("^docker,lo", "eth0"));
  EXPECT_TRUE(kumi::matchesIfname("^docker,lo", "ib0"));
  EXPECT_FALSE(kumi::matchesIfname("^lo", "lo0")) << "prefix exclusion also excludes lo0";
}

TEST(MatchesIfname, Exact) {
  EXPECT_TRUE(kumi::matchesIfname("=eth0", "eth0"));
  EXPECT_FALSE(kumi::matchesIfname("=eth0", "eth01"));
  EXPECT_FALSE(kumi::matchesIfname("=eth0", "eth"));
  EXPECT_TRUE(kumi::matchesIfname("=eth0,ib1", "ib1"));
  EXPECT_FALSE(kumi::matchesIfname("=eth0,ib1", "ib10"));
}

TEST(MatchesIfname, ExactExclusion) {
  EXPECT_FALSE(kumi::matchesIfname("^=lo", "lo"));
  EXPECT_TRUE(kumi::matchesIfname("^=lo", "lo0"));
  EXPECT_TRUE(kumi::matchesIfname("^=lo", "eth0"));
  EXPECT_FALSE(kumi::matchesIfname("^=docker0,lo", "docker0"));
  EXPECT_FALSE(kumi::matchesIfname("^=docker0,lo", "lo"));
  EXPECT_TRUE(kumi::matchesIfname("^=docker0,lo", "docker01"));
  EXPECT_TRUE(kumi::matchesIfname("^=docker0,lo", "eth0"));
}

TEST(Resolve, LocalhostIsLoopbackWithThePort) {
  auto addrs = kumi::resolve("localhost", 29500, "test");
  ASSERT_FALSE(addrs.empty());
  for (const auto& a : addrs) {
    EXPECT_TRUE(a.isLoopback()) << a.str();
    EXPECT_EQ(a.port(), 29500) << a.str();
    EXPECT_TRUE(a.family() == AF_INET || a.family() == AF_INET6) << a.str();
  }
  // No duplicates.
  for (std::size_t i = 0; i < addrs.size(); ++i)
    for (std::size_t j = i + 1; j < addrs.size(); ++j) EXPECT_NE(addrs[i].str(), addrs[j].str());
}

TEST(Resolve, NumericAddressesAndFormatting) {
  auto v4 = kumi::resolve("127.0.0.1", 80, "test");
  ASSERT_EQ(v4.size(), 1u);
  EXPECT_EQ(v4[0].str(), "127.0.0.1:80");
  EXPECT_EQ(v4[0].host(), "127.0.0.1");
  EXPECT_EQ(v4[0].family(), AF_INET);
  auto v6 = kumi::resolve("::1", 5, "test");
  ASSERT_EQ(v6.size(), 1u);
  EXPECT_EQ(v6[0].family(), AF_INET6);
  EXPECT_EQ(v6[0].str(), "[::1]:5");
  EXPECT_TRUE(v6[0].isLoopback());
  EXPECT_FALSE(kumi::resolve("192.0.2.1", 1, "test")[0].isLoopback());
  EXPECT_TRUE(kumi::resolve("127.1.2.3", 1, "test")[0].isLoopback());
}

TEST(ListenOn, PortZeroPicksAPort) {
  kumi::Fd fd = kumi::listenOn(ipv4("127.0.0.1", 0), 16, "test listener");
  ASSERT_TRUE(fd.valid());
  auto local = kumi::localAddress(fd.get());
  EXPECT_GT(local.port(), 0);
  EXPECT_EQ(local.host(), "127.0.0.1");
}

TEST(ListenOn, BusyPortIsAClearError) {
  kumi::Fd first = kumi::listenOn(ipv4("127.0.0.1", 0), 16, "first listener");
  const int port = kumi::localAddress(first.get()).port();
  std::string msg =
      errorOf([&] { kumi::listenOn(ipv4("127.0.0.1", port), 16, "kumi store server"); }, kumiSystemError);
  EXPECT_NE(msg.find("already in use"), std::string::npos) << msg;
  EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << "should name the address: " << msg;
  EXPECT_NE(msg.find("kumi store server"), std::string::npos) << "should name the user: " << msg;
}

TEST(ListenOn, ConnectAndTransfer) {
  kumi::Fd listener = kumi::listenOn(ipv4("127.0.0.1", 0), 16, "test");
  auto addr = kumi::localAddress(listener.get());
  std::string err;
  kumi::Fd c = kumi::tryConnect(addr, kumi::Deadline::after(5), &err);
  ASSERT_TRUE(c.valid()) << err;
  kumi::Fd s(::accept(listener.get(), nullptr, nullptr));
  ASSERT_TRUE(s.valid());
  const char msg[] = "hello kumi";
  kumi::writeFull(c.get(), msg, sizeof msg, kumi::Deadline::after(5), "test");
  char buf[sizeof msg] = {};
  kumi::readFull(s.get(), buf, sizeof buf, kumi::Deadline::after(5), "test");
  EXPECT_STREQ(buf, msg);
  EXPECT_EQ(kumi::peerAddress(s.get()).host(), "127.0.0.1");
  // Nothing more arrives: readFull times out with kumiTimeout; a closed peer is kumiRemoteError.
  errorOf([&] { kumi::readFull(s.get(), buf, 1, kumi::Deadline::after(0.05), "test"); }, kumiTimeout);
  c.reset();
  errorOf([&] { kumi::readFull(s.get(), buf, 1, kumi::Deadline::after(5), "test"); }, kumiRemoteError);
}

TEST(ChooseListenAddress, LoopbackInterfaceByName) {
  kumi::SockAddr a = kumi::chooseListenAddress("lo", nullptr);
  EXPECT_TRUE(a.isLoopback()) << a.str();
  EXPECT_EQ(a.family(), AF_INET) << "IPv4 is preferred: " << a.str();
  EXPECT_EQ(a.port(), 0);
  kumi::SockAddr b = kumi::chooseListenAddress("=lo", nullptr);
  EXPECT_TRUE(b.isLoopback()) << b.str();
}

TEST(ChooseListenAddress, SpecMatchingNothingNamesTheSpec) {
  std::string msg = errorOf([] { kumi::chooseListenAddress("nosuchif9", nullptr); }, kumiInvalidArgument);
  EXPECT_NE(msg.find("nosuchif9"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KUMI_SOCKET_IFNAME"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lo"), std::string::npos) << "should list the interfaces there are: " << msg;
}

TEST(ChooseListenAddress, TowardALoopbackStoreStaysOnLoopback) {
  kumi::SockAddr store = ipv4("127.0.0.1", 29500);
  kumi::SockAddr a = kumi::chooseListenAddress("", &store);
  EXPECT_TRUE(a.isLoopback()) << a.str();
  EXPECT_EQ(a.port(), 0);
}

TEST(ChooseListenAddress, WithoutHintsAnInterfaceAddressIsUsable) {
  kumi::SockAddr a = kumi::chooseListenAddress("", nullptr);
  EXPECT_EQ(a.family(), AF_INET) << a.str();
  // Whatever was chosen must be bindable here.
  kumi::Fd fd = kumi::listenOn(a, 4, "test");
  EXPECT_TRUE(fd.valid());
}

TEST(LocalAddressToward, LoopbackPeerGivesLoopback) {
  kumi::SockAddr a = kumi::localAddressToward(ipv4("127.0.0.1", 9));
  EXPECT_TRUE(a.isLoopback()) << a.str();
  EXPECT_EQ(a.port(), 0);
  kumi::SockAddr b = kumi::localAddressToward(ipv4("127.5.6.7", 9));
  EXPECT_TRUE(b.isLoopback()) << b.str();
}

TEST(ListInterfaces, HasLoopbackAndRespectsFamily) {
  auto v4 = kumi::listInterfaces(AF_INET);
  bool sawLo = false;
  for (const auto& i : v4) {
    EXPECT_EQ(i.addr.family(), AF_INET) << i.name;
    if (i.name == "lo") sawLo = sawLo || i.addr.isLoopback();
  }
  EXPECT_TRUE(sawLo);
  for (const auto& i : kumi::listInterfaces(AF_INET6)) EXPECT_EQ(i.addr.family(), AF_INET6) << i.name;
}

}  // namespace
