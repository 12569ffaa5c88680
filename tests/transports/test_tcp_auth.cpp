// The TCP transport's connection handshake against strangers: the shared secret (same, different,
// on one side only, a forged proof), and a listener flooded with silent connections, garbage and
// more handshakes than it keeps, while real peers still connect at once.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "../common/drive.hpp"
#include "core/error.hpp"
#include "rendezvous/store.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"
#include "transports/tcp/connection_handshake.hpp"
#include "transports/tcp/tcp_transport.hpp"

namespace kumi {
namespace {

using Clock = std::chrono::steady_clock;
using test::drive;

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

using kumi::test::closedByPeer;

class TcpAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TcpStoreServer>(resolve("127.0.0.1", 0, "test").front());
    server_->start();
  }
  std::shared_ptr<Store> scope() {
    auto client = std::make_shared<TcpStoreClient>(server_->address().str(), Deadline::after(5));
    return std::make_shared<PrefixStore>("scope", client);
  }
  std::unique_ptr<TcpTransport> make(int rank, const std::string& secret, double handshakeSeconds = 5) {
    TcpOptions o;
    o.rank = rank;
    o.worldSize = 2;
    o.jobId = job_;  // (from std::string: gcc 12 warns falsely, -Wrestrict, on a literal here)
    o.commId = comm_;
    o.socketsPerPeer = 2;
    o.listenAddress = resolve("127.0.0.1", 0, "test").front();
    o.handshakeSeconds = handshakeSeconds;
    o.secret = secret;
    return std::make_unique<TcpTransport>(o, scope());
  }
  // Where rank r listens, as it published it.
  SockAddr listenAddressOf(int r) {
    std::string v = scope()->get(cat("tcp/", r), std::chrono::seconds(5));
    auto [host, port] = splitHostPort(v.substr(0, v.find('|')), "test");
    return resolve(host, port, "test").front();
  }
  Fd rawConnect(const SockAddr& a) {
    std::string err;
    Fd fd = tryConnect(a, Deadline::after(5), &err);
    EXPECT_TRUE(fd.valid()) << err;
    return fd;
  }
  // One value each way over a connected pair.
  void exchange(TcpTransport& a, TcpTransport& b) {
    std::int64_t x = 1234, y = 0, z = 77, w = 0;
    Request s1, r1, s2, r2;
    a.postSend(1, &x, sizeof x, &s1);
    b.postRecv(0, &y, sizeof y, &r1);
    b.postSend(0, &z, sizeof z, &s2);
    a.postRecv(1, &w, sizeof w, &r2);
    drive({&a, &b}, {&s1, &r1, &s2, &r2});
    EXPECT_EQ(y, 1234);
    EXPECT_EQ(w, 77);
  }
  // Rank 0 connects to rank 1, which must answer within a second whatever strangers do.
  void connectQuickly(TcpTransport& a, TcpTransport& b, const char* despite) {
    const auto t0 = Clock::now();
    std::thread tb([&] { b.connect({0}, Deadline::after(10)); });
    a.connect({1}, Deadline::after(10));
    tb.join();
    EXPECT_LT(secondsSince(t0), 2.0) << "connecting took too long despite " << despite;
    exchange(a, b);
  }
  std::unique_ptr<TcpStoreServer> server_;
  const std::string job_ = "job", comm_ = "c";
};

TEST_F(TcpAuthTest, SameSecretConnectsAndCarriesData) {
  auto a = make(0, "shared"), b = make(1, "shared");
  connectQuickly(*a, *b, "nothing");
}

TEST_F(TcpAuthTest, DifferentSecretsAreRefusedNamingThePeer) {
  auto a = make(0, "one"), b = make(1, "two");
  try {
    a->connect({1}, Deadline::after(5));
    FAIL() << "a connection with the wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiRemoteError);
    EXPECT_TRUE(contains(e.what(), "rank 1")) << e.what();
    EXPECT_TRUE(contains(e.what(), "KUMI_SECRET differs")) << e.what();
    EXPECT_FALSE(contains(e.what(), "one") && contains(e.what(), "two")) << e.what();
  }
}

TEST_F(TcpAuthTest, ASecretOnOneSideOnlyFailsClearlyBothWays) {
  {
    auto a = make(0, "s"), b = make(1, "");
    try {
      a->connect({1}, Deadline::after(5));
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "does not authenticate")) << e.what();
      EXPECT_TRUE(contains(e.what(), "rank 1")) << e.what();
    }
  }
  auto a = make(0, ""), b = make(1, "s");
  const auto t0 = Clock::now();
  try {
    a->connect({1}, Deadline::after(20));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "requires authentication")) << e.what();
  }
  EXPECT_LT(secondsSince(t0), 2.0) << "the mismatch must show at once, not at a deadline";
}

TEST_F(TcpAuthTest, AStrangerWhoKnowsTheJobButNotTheSecretIsRefused) {
  auto a = make(0, "s"), b = make(1, "s");
  // A Hello that matches job, generation, communicator and world, with a guessed proof.
  Fd raw = rawConnect(listenAddressOf(1));
  tcp::Greeting g;
  readFull(raw.get(), &g, sizeof g, Deadline::after(5), "greeting");
  ASSERT_EQ(tcp::checkGreeting(g, true), tcp::GreetingCheck::kOk);
  tcp::Hello h{};
  h.magic = tcp::kHelloMagic;
  h.version = tcp::kProtocolVersion;
  h.socketCount = 1;
  h.rank = 0;
  h.worldSize = 2;
  std::strncpy(h.jobId, "job", sizeof h.jobId - 1);
  h.jobHash = fnv1a("job");
  h.commHash = fnv1a("c");
  auth::Nonce theirs;
  std::memcpy(theirs.data(), g.nonce, theirs.size());
  const tcp::HelloProof forged = tcp::makeHelloProof("guess", theirs, auth::randomNonce(), h);
  writeFull(raw.get(), &h, sizeof h, Deadline::after(5), "hello");
  writeFull(raw.get(), &forged, sizeof forged, Deadline::after(5), "proof");
  tcp::HelloReply reply{};
  readFull(raw.get(), &reply, sizeof reply, Deadline::after(5), "reply");
  EXPECT_EQ(reply.status, tcp::kAuthFailed);
  EXPECT_TRUE(closedByPeer(raw.get(), 3.0));
  // The impostor claimed rank 0; the real rank 0 still gets in.
  connectQuickly(*a, *b, "an impostor");
}

TEST_F(TcpAuthTest, SilentConnectionsAndGarbageDoNotHoldUpRealPeers) {
  auto a = make(0, "s"), b = make(1, "s");
  const SockAddr target = listenAddressOf(1);
  std::vector<Fd> silent;
  for (int i = 0; i < 60; ++i) silent.push_back(rawConnect(target));
  std::vector<Fd> garbage;
  for (int i = 0; i < 20; ++i) {
    garbage.push_back(rawConnect(target));
    std::string junk(50 + i, static_cast<char>(0x41 + i));
    ::send(garbage.back().get(), junk.data(), junk.size(), MSG_NOSIGNAL);
  }
  connectQuickly(*a, *b, "60 silent connections and 20 with garbage");
  for (auto& fd : garbage) EXPECT_TRUE(closedByPeer(fd.get(), 3.0)) << "garbage was not dropped";
}

TEST_F(TcpAuthTest, HalfOpenConnectionsAreDroppedAfterTheHandshakeTime) {
  auto a = make(0, "", 1.0), b = make(1, "", 1.0);
  Fd silent = rawConnect(listenAddressOf(1));
  const auto t0 = Clock::now();
  EXPECT_TRUE(closedByPeer(silent.get(), 5.0)) << "a silent connection outlived the 1 s handshake time";
  EXPECT_GE(secondsSince(t0), 0.5);
  connectQuickly(*a, *b, "a half-open connection");
}

TEST_F(TcpAuthTest, AFloodPushesOutTheOldestHandshakes) {
  auto a = make(0, "s"), b = make(1, "s");
  const SockAddr target = listenAddressOf(1);
  std::vector<Fd> flood;
  for (std::size_t i = 0; i < tcp::Acceptor::kMaxPending + 100; ++i) flood.push_back(rawConnect(target));
  connectQuickly(*a, *b, "a flood of handshakes");
  EXPECT_TRUE(closedByPeer(flood.front().get(), 3.0)) << "the oldest handshake was not pushed out";
}

}  // namespace
}  // namespace kumi
