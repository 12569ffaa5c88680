// The TCP store against strangers: the shared-secret handshake in both directions (right, wrong
// and missing secrets, a fake store that cannot prove it knows the secret), and connections that
// flood, stay silent, send garbage or never read, none of which may disturb real clients.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../common/test_util.hpp"
#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_protocol.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kumi::test::errorOf;
namespace sp = kumi::store_protocol;

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }
kumi::SockAddr loopback(int port) { return kumi::resolve("127.0.0.1", port, "test").front(); }

kumi::Fd rawConnect(const kumi::SockAddr& addr) {
  std::string err;
  kumi::Fd fd = kumi::tryConnect(addr, kumi::Deadline::after(5), &err);
  EXPECT_TRUE(fd.valid()) << err;
  return fd;
}

using kumi::test::closedByPeer;

void sendAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close a misbehaving connection while we write
    done += static_cast<std::size_t>(n);
  }
}

// A real client still gets answers, and quickly.
void expectServing(const std::string& addr, const std::string& secret, const char* after) {
  const auto t0 = Clock::now();
  kumi::TcpStoreClient c(addr, kumi::Deadline::after(10), secret);
  c.set("probe", after);
  EXPECT_EQ(c.get("probe", 1s), after);
  EXPECT_LT(secondsSince(t0), 3.0) << "a real client waited too long after " << after;
}

TEST(StoreAuth, SameSecretServes) {
  kumi::TcpStoreServer server(loopback(0), "the job's secret");
  server.start();
  EXPECT_TRUE(server.requiresSecret());
  kumi::TcpStoreClient a(server.address().str(), kumi::Deadline::after(5), "the job's secret");
  kumi::TcpStoreClient b(server.address().str(), kumi::Deadline::after(5), "the job's secret");
  a.set("k", "v");
  EXPECT_EQ(b.get("k", 1s), "v");
  EXPECT_EQ(b.add("n", 5), 5);
  EXPECT_EQ(a.compareSet("cs", "", "x"), "x");
}

TEST(StoreAuth, WrongSecretIsRefusedAtOnceNamingTheStore) {
  kumi::TcpStoreServer server(loopback(0), "right");
  server.start();
  const std::string addr = server.address().str();
  const auto t0 = Clock::now();
  const std::string msg =
      errorOf([&] { kumi::TcpStoreClient c(addr, kumi::Deadline::after(20), "wrong"); }, kumiRemoteError);
  EXPECT_TRUE(contains(msg, "refused authentication")) << msg;
  EXPECT_TRUE(contains(msg, "KUMI_SECRET differs")) << msg;
  EXPECT_TRUE(contains(msg, addr)) << msg;
  EXPECT_FALSE(contains(msg, "right") || contains(msg, "wrong")) << "a secret leaked into the message: " << msg;
  EXPECT_LT(secondsSince(t0), 2.0) << "a refusal is final, not retried until the deadline";
  expectServing(addr, "right", "a refused client");
}

TEST(StoreAuth, MissingSecretEitherSideFailsClearly) {
  kumi::TcpStoreServer guarded(loopback(0), "s");
  guarded.start();
  std::string msg = errorOf(
      [&] { kumi::TcpStoreClient c(guarded.address().str(), kumi::Deadline::after(20)); }, kumiRemoteError);
  EXPECT_TRUE(contains(msg, "requires authentication")) << msg;
  EXPECT_TRUE(contains(msg, "KUMI_SECRET")) << msg;

  kumi::TcpStoreServer open(loopback(0));
  open.start();
  const auto t0 = Clock::now();
  msg = errorOf([&] { kumi::TcpStoreClient c(open.address().str(), kumi::Deadline::after(20), "s"); },
                kumiRemoteError);
  EXPECT_TRUE(contains(msg, "does not authenticate")) << msg;
  EXPECT_LT(secondsSince(t0), 2.0);
}

TEST(StoreAuth, AFakeStoreThatCannotProveTheSecretIsRejected) {
  // A listener that greets like a store requiring the secret, then "accepts" without a proof.
  kumi::Fd listener = kumi::listenOn(loopback(0), 4, "fake store");
  const kumi::SockAddr addr = kumi::localAddress(listener.get());
  std::thread fake([&] {
    int fd = ::accept(listener.get(), nullptr, nullptr);
    if (fd < 0) return;
    kumi::Fd conn(fd);
    const sp::Greeting g = sp::makeGreeting(true, kumi::auth::randomNonce());
    sendAll(fd, std::string(reinterpret_cast<const char*>(&g), sizeof g));
    sp::ClientHello hello;
    kumi::readFull(fd, &hello, sizeof hello, kumi::Deadline::after(5), "fake store");
    sp::Verdict v{};
    v.accepted = 1;  // a proof of zeros
    sendAll(fd, std::string(reinterpret_cast<const char*>(&v), sizeof v));
    closedByPeer(fd, 5);
  });
  const std::string msg =
      errorOf([&] { kumi::TcpStoreClient c(addr.str(), kumi::Deadline::after(10), "s"); }, kumiRemoteError);
  fake.join();
  EXPECT_TRUE(contains(msg, "could not prove")) << msg;
}

TEST(StoreAuth, StrangersWithoutTheSecretGetNoData) {
  kumi::TcpStoreServer server(loopback(0), "s");
  server.start();
  kumi::TcpStoreClient owner(server.address().str(), kumi::Deadline::after(5), "s");
  owner.set("private", "data");
  // A stranger that skips the handshake and asks for the key is dropped, answered nothing.
  kumi::Fd raw = rawConnect(server.address());
  sp::Writer w;
  w.u8(sp::kGet);
  w.str("private");
  w.u32(1000);
  sendAll(raw.get(), w.bytes());
  std::string got;
  char buf[256];
  auto deadline = kumi::Deadline::after(3);
  for (;;) {
    pollfd p{raw.get(), POLLIN, 0};
    if (deadline.expired() || ::poll(&p, 1, deadline.msLeft()) <= 0) break;
    ssize_t n = ::recv(raw.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(got.size(), sizeof(sp::Greeting)) << "the stranger got more than the greeting";
  EXPECT_FALSE(contains(got, "data"));
  EXPECT_EQ(owner.get("private", 1s), "data");
}

TEST(StoreStrangers, GarbageBeforeTheHandshakeDropsOnlyThatConnection) {
  kumi::TcpStoreServer server(loopback(0), "s");
  server.start();
  kumi::TcpStoreClient before(server.address().str(), kumi::Deadline::after(5), "s");
  before.set("k", "v");
  for (int i = 0; i < 20; ++i) {
    kumi::Fd raw = rawConnect(server.address());
    sendAll(raw.get(), std::string(7 + i * 13, static_cast<char>('A' + i)));
    EXPECT_TRUE(closedByPeer(raw.get(), 3.0)) << "garbage " << i << " was not dropped";
  }
  // A hello of the right shape with a wrong proof: refused with a verdict, then closed.
  kumi::Fd raw = rawConnect(server.address());
  sp::Greeting g;
  kumi::readFull(raw.get(), &g, sizeof g, kumi::Deadline::after(5), "greeting");
  EXPECT_EQ(sp::checkGreeting(g, true), sp::GreetingCheck::kOk);
  {
    auto hello = sp::makeClientHello("guess", kumi::auth::randomNonce(), kumi::auth::randomNonce());
    sendAll(raw.get(), std::string(reinterpret_cast<const char*>(&hello), sizeof hello));
    sp::Verdict v{};
    kumi::readFull(raw.get(), &v, sizeof v, kumi::Deadline::after(5), "verdict");
    EXPECT_EQ(v.accepted, 0);
    EXPECT_TRUE(closedByPeer(raw.get(), 3.0));
  }
  EXPECT_EQ(before.get("k", 1s), "v") << "an authenticated client was disturbed";
  expectServing(server.address().str(), "s", "garbage");
}

TEST(StoreStrangers, SilentConnectionsDoNotHoldUpRealClients) {
  kumi::TcpStoreServer server(loopback(0), "s");
  server.start();
  std::vector<kumi::Fd> silent;
  for (int i = 0; i < 300; ++i) silent.push_back(rawConnect(server.address()));
  expectServing(server.address().str(), "s", "300 silent connections");
  // Half-open ones are dropped once the handshake time is over.
  EXPECT_TRUE(closedByPeer(silent.front().get(), kumi::TcpStoreServer::kHandshakeSeconds + 3))
      << "a connection that never sent its hello was kept past the handshake time";
}

TEST(StoreStrangers, AFloodPushesOutTheOldestHandshakesAndRealClientsStillGetIn) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  // Both ends live in this process, and the server keeps handshakes to a quarter of the limit.
  const rlim_t need = 4 * kumi::TcpStoreServer::kMaxPendingHandshakes + 512;
  if (lim.rlim_cur < need) {
    lim.rlim_cur = std::min(need, lim.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < need) GTEST_SKIP() << "needs " << need << " file descriptors, the hard limit is " << lim.rlim_max;
  kumi::TcpStoreServer server(loopback(0), "s");
  server.start();
  std::vector<kumi::Fd> flood;
  for (std::size_t i = 0; i < kumi::TcpStoreServer::kMaxPendingHandshakes + 200; ++i)
    flood.push_back(rawConnect(server.address()));
  expectServing(server.address().str(), "s", "a flood of handshakes");
  EXPECT_TRUE(closedByPeer(flood.front().get(), 3.0)) << "the oldest handshake was not pushed out";
  EXPECT_FALSE(closedByPeer(flood.back().get(), 0.2)) << "the newest handshake should still be waiting";
}

// Thousands of ranks connecting at once are not a flood: more connections than the handshake
// cap, each sending its hello at once, must all be served (the server reads a waiting hello
// before it pushes a connection out). The full-scale version is scripts.test_store_load.
TEST(StoreStrangers, MoreRanksThanTheHandshakeCapConnectingAtOnceAllGetIn) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  const std::size_t ranks = kumi::TcpStoreServer::kMaxPendingHandshakes * 2;
  const rlim_t need = 4 * ranks + 512;  // both ends here, and the cap is a quarter of the limit
  if (lim.rlim_cur < need) {
    lim.rlim_cur = std::min(need, lim.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < need) GTEST_SKIP() << "needs " << need << " file descriptors, the hard limit is " << lim.rlim_max;
  kumi::TcpStoreServer server(loopback(0));
  const auto hello = sp::makeClientHello("", {}, {});
  std::string helloAndPing(reinterpret_cast<const char*>(&hello), sizeof hello);
  helloAndPing += static_cast<char>(sp::kPing);
  std::vector<kumi::Fd> conns;
  for (std::size_t i = 0; i < ranks; ++i) {
    conns.push_back(rawConnect(server.address()));
    sendAll(conns.back().get(), helloAndPing);  // as TcpStoreClient does, before reading anything
  }
  // Started only now, it finds them all in its listen queue at once, each with its hello sent.
  server.start();
  std::size_t served = 0;
  for (auto& fd : conns) {
    char reply[sizeof(sp::Greeting) + 1];
    try {
      kumi::readFull(fd.get(), reply, sizeof reply, kumi::Deadline::after(10), "greeting and ping");
      served += reply[sizeof(sp::Greeting)] == static_cast<char>(sp::kOk);
    } catch (const kumi::Error&) {
    }
  }
  EXPECT_EQ(served, ranks) << "ranks were pushed out as if they were a flood";
}

TEST(StoreStrangers, AnEndlessStreamIsCutOffAtTheLargestRequest) {
  // Without a secret anyone may talk to the store; still, bytes sent while a get is parked pile
  // up only to the size of the largest request before the sender is dropped.
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  kumi::Fd raw = rawConnect(server.address());
  sp::Greeting g;
  kumi::readFull(raw.get(), &g, sizeof g, kumi::Deadline::after(5), "greeting");
  const auto hello = sp::makeClientHello("", {}, {});
  sp::Writer w;
  w.u8(sp::kGet);
  w.str("never-set");
  w.u32(60000);
  sendAll(raw.get(), std::string(reinterpret_cast<const char*>(&hello), sizeof hello) + w.bytes());
  std::thread streamer([fd = raw.get()] {
    const std::string chunk(1 << 20, 'x');
    for (std::size_t sent = 0; sent < sp::kMaxRequestBytes + (8u << 20); sent += chunk.size()) {
      if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) return;
    }
  });
  EXPECT_TRUE(closedByPeer(raw.get(), 30.0)) << "the server kept buffering a parked client's stream";
  streamer.join();
  expectServing(server.address().str(), "", "an endless stream");
}

TEST(StoreStrangers, AClientThatNeverReadsDoesNotStallOthers) {
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  kumi::TcpStoreClient owner(server.address().str(), kumi::Deadline::after(5));
  owner.set("big", std::string(4 << 20, 'b'));
  kumi::Fd raw = rawConnect(server.address());
  sp::Greeting g;
  kumi::readFull(raw.get(), &g, sizeof g, kumi::Deadline::after(5), "greeting");
  const auto hello = sp::makeClientHello("", {}, {});
  std::string requests(reinterpret_cast<const char*>(&hello), sizeof hello);
  for (int i = 0; i < 200; ++i) {
    sp::Writer w;
    w.u8(sp::kGet);
    w.str("big");
    w.u32(0);
    requests += w.bytes();
  }
  sendAll(raw.get(), requests);  // 800 MiB of replies asked for, none read
  std::this_thread::sleep_for(200ms);
  expectServing(server.address().str(), "", "a client that never reads");
}

}  // namespace
