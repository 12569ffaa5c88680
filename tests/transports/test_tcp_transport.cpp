// The TCP transport in one process: transports of several "ranks" share a real store server on
// loopback. Covers ordered delivery with striping, simultaneous connects from both sides, the
// handshake refusing strangers, size mismatches, and a peer going away.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "../common/drive.hpp"
#include "core/error.hpp"
#include "rendezvous/store.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"
#include "transports/tcp/tcp_transport.hpp"

namespace kumi {
namespace {

using test::drive;

class TcpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TcpStoreServer>(resolve("127.0.0.1", 0, "test").front());
    server_->start();
  }
  std::unique_ptr<TcpTransport> make(int rank, int size, const std::string& job = "job", int generation = 0,
                                     int sockets = 3, const std::string& comm = "c") {
    auto client = std::make_shared<TcpStoreClient>(server_->address().str(), Deadline::after(5));
    TcpOptions o;
    o.rank = rank;
    o.worldSize = size;
    o.jobId = job;
    o.generation = generation;
    o.commId = comm;
    o.socketsPerPeer = sockets;
    o.listenAddress = resolve("127.0.0.1", 0, "test").front();
    o.handshakeSeconds = 5;
    // Stores are scoped like a communicator's; strangers share the scope to find each other.
    return std::make_unique<TcpTransport>(o, std::make_shared<PrefixStore>("scope", client));
  }
  std::unique_ptr<TcpStoreServer> server_;
};

TEST_F(TcpTransportTest, OrderedMessagesWithStriping) {
  auto a = make(0, 2), b = make(1, 2);
  std::thread ca([&] { a->connect({1}, Deadline::after(10)); });
  b->connect({0}, Deadline::after(10));
  ca.join();
  // 0 bytes, small, and large (striped over the three sockets), in order.
  std::vector<std::size_t> sizes = {0, 100, 3u << 20, 7, 1u << 20};
  std::vector<std::vector<char>> out, in;
  std::vector<Request> sreq(sizes.size()), rreq(sizes.size());
  std::vector<Request*> all;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    out.emplace_back(sizes[i]);
    for (std::size_t j = 0; j < sizes[i]; ++j) out[i][j] = static_cast<char>((i * 31 + j * 7) & 0x7f);
    in.emplace_back(sizes[i], 0);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    a->postSend(1, out[i].data(), sizes[i], &sreq[i]);
    b->postRecv(0, in[i].data(), sizes[i], &rreq[i]);
    all.push_back(&sreq[i]);
    all.push_back(&rreq[i]);
  }
  drive({a.get(), b.get()}, all);
  for (std::size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(out[i], in[i]) << "message " << i;
}

TEST_F(TcpTransportTest, SimultaneousConnectsConverge) {
  // Both sides initiate at once, many times: exactly one connection set must survive and work.
  for (int round = 0; round < 15; ++round) {
    auto a = make(0, 2, "job", 0, 2, cat("c", round));
    auto b = make(1, 2, "job", 0, 2, cat("c", round));
    std::atomic<bool> go{false};
    std::thread ta([&] {
      while (!go) {}
      a->connect({1}, Deadline::after(10));
    });
    std::thread tb([&] {
      while (!go) {}
      b->connect({0}, Deadline::after(10));
    });
    go = true;
    ta.join();
    tb.join();
    std::int64_t x = 42 + round, y = 0, z = 7, w = 0;
    Request s1, r1, s2, r2;
    a->postSend(1, &x, sizeof x, &s1);
    b->postRecv(0, &y, sizeof y, &r1);
    b->postSend(0, &z, sizeof z, &s2);
    a->postRecv(1, &w, sizeof w, &r2);
    drive({a.get(), b.get()}, {&s1, &r1, &s2, &r2});
    EXPECT_EQ(y, 42 + round);
    EXPECT_EQ(w, 7);
  }
}

TEST_F(TcpTransportTest, RefusesAnotherJob) {
  auto a = make(0, 2, "job-A"), b = make(1, 2, "job-B");
  try {
    a->connect({1}, Deadline::after(5));
    FAIL() << "a connection across jobs was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiRemoteError);
    EXPECT_NE(std::string(e.what()).find("different job id"), std::string::npos) << e.what();
  }
}

TEST_F(TcpTransportTest, RefusesAStaleGeneration) {
  auto a = make(0, 2, "job", 1), b = make(1, 2, "job", 2);
  try {
    b->connect({0}, Deadline::after(5));
    FAIL() << "a connection across generations was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("generation"), std::string::npos) << e.what();
  }
}

TEST_F(TcpTransportTest, SizeMismatchIsNamed) {
  auto a = make(0, 2, "job", 0, 1), b = make(1, 2, "job", 0, 1);
  std::thread ca([&] { a->connect({1}, Deadline::after(10)); });
  b->connect({0}, Deadline::after(10));
  ca.join();
  std::vector<char> out(100), in(200);
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  b->postRecv(0, in.data(), in.size(), &r);
  try {
    drive({a.get(), b.get()}, {&s, &r});
    FAIL() << "size mismatch not detected";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("100 bytes where 200 were expected"), std::string::npos) << m;
  }
}

TEST_F(TcpTransportTest, PeerGoingAwayFailsPendingReceive) {
  auto a = make(0, 2), b = make(1, 2);
  std::thread ca([&] { a->connect({1}, Deadline::after(10)); });
  b->connect({0}, Deadline::after(10));
  ca.join();
  char buf[64];
  Request r;
  a->postRecv(1, buf, sizeof buf, &r);
  b->shutdown();
  try {
    drive({a.get()}, {&r}, 5);
    FAIL() << "closed peer not detected";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiRemoteError);
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
}

TEST_F(TcpTransportTest, WaitBlocksInsteadOfSpinning) {
  auto a = make(0, 2), b = make(1, 2);
  std::thread ca([&] { a->connect({1}, Deadline::after(10)); });
  b->connect({0}, Deadline::after(10));
  ca.join();
  // Nothing to do: waitForEvents must sleep for (about) its timeout, using little CPU.
  std::clock_t c0 = std::clock();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 6; ++i) a->waitForEvents(40);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  EXPECT_GE(wall, 0.15);
  EXPECT_LT(cpu, wall / 4);
  // And interrupt() interrupts it from another thread.
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    a->interrupt();
  });
  t0 = std::chrono::steady_clock::now();
  a->waitForEvents(5000);
  wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  waker.join();
  EXPECT_LT(wall, 2.0);
}

}  // namespace
}  // namespace kumi
