// The rendezvous stores: the same contract checked on the TCP store (in-process server on
// loopback) and the file store (fresh directory under /tmp), then TCP-specific behaviour:
// connect retries, unreachable servers, shutdown mid-wait, garbage on the wire, many clients.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <kumi/kumi.hpp>

#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/file_store.hpp"
#include "rendezvous/store.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_protocol.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace {

using namespace std::chrono_literals;
using kumi::Store;
using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

using kumi::test::errorOf;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

kumi::SockAddr loopback(int port) { return kumi::resolve("127.0.0.1", port, "test").front(); }

// A port that was free a moment ago (bound to port 0, then closed).
int freePort() {
  kumi::Fd fd = kumi::listenOn(loopback(0), 1, "probe");
  return kumi::localAddress(fd.get()).port();
}

struct TcpBackend {
  TcpBackend() : server(std::make_unique<kumi::TcpStoreServer>(loopback(0))) { server->start(); }
  std::shared_ptr<Store> connect() {
    return std::make_shared<kumi::TcpStoreClient>(server->address().str(), kumi::Deadline::after(10));
  }
  std::unique_ptr<kumi::TcpStoreServer> server;
};

struct FileBackend {
  FileBackend() {
    char tmpl[] = "/tmp/kumi-store-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = d;
  }
  ~FileBackend() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::shared_ptr<Store> connect() { return std::make_shared<kumi::FileStore>(dir); }
  std::string dir;
};

template <class Backend>
class StoreTest : public ::testing::Test {
 protected:
  Backend backend;
  std::shared_ptr<Store> store = backend.connect();
};

struct BackendNames {
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, TcpBackend> ? "Tcp" : "File";
  }
};
using Backends = ::testing::Types<TcpBackend, FileBackend>;
TYPED_TEST_SUITE(StoreTest, Backends, BackendNames);

TYPED_TEST(StoreTest, SetThenGet) {
  Store& s = *this->store;
  s.set("alpha", "1");
  EXPECT_EQ(s.get("alpha", 1s), "1");
  s.set("alpha", "two");
  EXPECT_EQ(s.get("alpha", 1s), "two") << "set overwrites";
  s.set("empty", "");
  EXPECT_EQ(s.get("empty", 1s), "");
  EXPECT_TRUE(s.check({"empty"})) << "an empty value is still a key";
  auto other = this->backend.connect();
  EXPECT_EQ(other->get("alpha", 1s), "two") << "visible through another connection";
  s.set("job/gen0/rank 3:addr", "x");
  EXPECT_EQ(other->get("job/gen0/rank 3:addr", 0ms), "x") << "keys with separators; zero timeout on a present key";
  EXPECT_FALSE(other->check({"job"}));
  EXPECT_FALSE(other->check({"job/gen0"}));
}

TYPED_TEST(StoreTest, GetBlocksUntilAnotherThreadSets) {
  auto writer = this->backend.connect();
  const auto t0 = Clock::now();
  std::jthread t([&] {
    std::this_thread::sleep_for(200ms);
    writer->set("late", "arrived");
  });
  std::string v = this->store->get("late", 10s);
  const double waited = secondsSince(t0);
  EXPECT_EQ(v, "arrived");
  EXPECT_GE(waited, 0.15);
  EXPECT_LT(waited, 5.0);
}

TYPED_TEST(StoreTest, SeveralGettersWakeOnOneSet) {
  std::vector<std::string> got(4);
  {
    std::vector<std::jthread> getters;
    for (int i = 0; i < 4; ++i)
      getters.emplace_back([&, i] {
        try {
          got[i] = this->backend.connect()->get("broadcast", 10s);
        } catch (const std::exception& e) {
          got[i] = std::string("error: ") + e.what();
        }
      });
    std::this_thread::sleep_for(150ms);
    this->store->set("broadcast", "hello");
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], "hello") << "getter " << i;
}

TYPED_TEST(StoreTest, GetTimesOutNamingTheKey) {
  Store& s = *this->store;
  const auto t0 = Clock::now();
  std::string msg = errorOf([&] { s.get("missing-key-42", 300ms); }, kumiTimeout);
  const double waited = secondsSince(t0);
  EXPECT_TRUE(contains(msg, "missing-key-42")) << msg;
  EXPECT_GE(waited, 0.25);
  EXPECT_LT(waited, 3.0);
  errorOf([&] { s.get("missing-key-42", 0ms); }, kumiTimeout);
  // The store stays usable after a timeout.
  s.set("after-timeout", "ok");
  EXPECT_EQ(s.get("after-timeout", 1s), "ok");
  EXPECT_EQ(s.add("after-timeout-counter", 2), 2);
}

TYPED_TEST(StoreTest, WaitNamesOnlyTheMissingKeys) {
  Store& s = *this->store;
  s.set("present-alpha", "1");
  const auto t0 = Clock::now();
  std::string msg = errorOf([&] { s.wait({"present-alpha", "missing-beta", "missing-gamma"}, 300ms); }, kumiTimeout);
  EXPECT_GE(secondsSince(t0), 0.25);
  EXPECT_TRUE(contains(msg, "missing-beta")) << msg;
  EXPECT_TRUE(contains(msg, "missing-gamma")) << msg;
  EXPECT_FALSE(contains(msg, "present-alpha")) << msg;

  auto writer = this->backend.connect();
  const auto t1 = Clock::now();
  std::jthread t([&] {
    std::this_thread::sleep_for(150ms);
    writer->set("missing-beta", "b");
    std::this_thread::sleep_for(100ms);
    writer->set("missing-gamma", "c");
  });
  s.wait({"present-alpha", "missing-beta", "missing-gamma"}, 10s);
  EXPECT_GE(secondsSince(t1), 0.2) << "returned before the last key was set";
  EXPECT_NO_THROW(s.wait({}, 0ms));
  EXPECT_NO_THROW(s.wait({"present-alpha"}, 0ms));
}

TYPED_TEST(StoreTest, WaitWithARepeatedKey) {
  // A key listed twice must not confuse the store (nor crash it).
  Store& s = *this->store;
  s.set("twice-present", "1");
  EXPECT_NO_THROW(s.wait({"twice-present", "twice-present"}, 1s));
  std::string msg = errorOf([&] { s.wait({"twice-missing", "twice-missing"}, 100ms); }, kumiTimeout);
  EXPECT_TRUE(contains(msg, "twice-missing")) << msg;
  EXPECT_EQ(s.add("still-working", 1), 1);
}

TYPED_TEST(StoreTest, Check) {
  Store& s = *this->store;
  EXPECT_FALSE(s.check({"c1"}));
  s.set("c1", "v");
  EXPECT_TRUE(s.check({"c1"}));
  EXPECT_FALSE(s.check({"c1", "c2"}));
  s.set("c2", "v");
  EXPECT_TRUE(s.check({"c1", "c2"}));
  EXPECT_TRUE(s.check({}));
}

TYPED_TEST(StoreTest, AddStartsAtZero) {
  Store& s = *this->store;
  EXPECT_EQ(s.add("ctr", 0), 0);
  EXPECT_EQ(s.add("ctr", 5), 5);
  EXPECT_EQ(s.add("ctr", -7), -2);
  EXPECT_EQ(s.get("ctr", 1s), "-2") << "the counter is readable as a decimal string";
  EXPECT_EQ(s.add("fresh", 3), 3);
  s.set("preset", "41");
  EXPECT_EQ(s.add("preset", 1), 42);
  EXPECT_EQ(s.add("big", std::int64_t{1} << 40), std::int64_t{1} << 40);
  EXPECT_EQ(s.add("big", std::int64_t{1} << 40), std::int64_t{1} << 41);
}

TYPED_TEST(StoreTest, ConcurrentAddsAreAtomic) {
  constexpr int kThreads = 8, kAdds = 100;
  std::vector<std::vector<std::int64_t>> seen(kThreads);
  std::vector<std::string> errors(kThreads);
  {
    std::latch go(kThreads);
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        try {
          auto mine = this->backend.connect();  // one connection per thread
          go.arrive_and_wait();
          for (int j = 0; j < kAdds; ++j) seen[i].push_back(mine->add("shared-counter", 1));
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
  }
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(errors[i], "") << "thread " << i;
  std::vector<std::int64_t> all;
  for (const auto& v : seen) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "one thread's adds must see increasing values";
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<std::int64_t> expected(kThreads * kAdds);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(all, expected) << "every add must return a distinct value 1..800";
  EXPECT_EQ(this->store->add("shared-counter", 0), kThreads * kAdds);
}

TYPED_TEST(StoreTest, CompareSet) {
  Store& s = *this->store;
  EXPECT_EQ(s.compareSet("cs", "", "first"), "first") << "a missing key equals \"\"";
  EXPECT_EQ(s.get("cs", 1s), "first");
  EXPECT_EQ(s.compareSet("cs", "", "second"), "first") << "the key exists now; \"\" no longer matches";
  EXPECT_EQ(s.compareSet("cs", "wrong", "third"), "first") << "wrong expected returns the current value";
  EXPECT_EQ(s.get("cs", 1s), "first") << "and leaves it unchanged";
  EXPECT_EQ(s.compareSet("cs", "first", "fourth"), "fourth") << "right expected swaps";
  EXPECT_EQ(s.get("cs", 1s), "fourth");
  EXPECT_EQ(s.compareSet("cs-missing", "something", "x"), "") << "missing key, non-empty expected";
  EXPECT_FALSE(s.check({"cs-missing"})) << "and it stays missing";
  s.set("cs-empty", "");
  EXPECT_EQ(s.compareSet("cs-empty", "", "filled"), "filled") << "an empty value equals \"\" too";
}

TYPED_TEST(StoreTest, CompareSetElectsExactlyOneWinner) {
  constexpr int kThreads = 8;
  std::vector<std::string> result(kThreads);
  {
    std::latch go(kThreads);
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        try {
          auto mine = this->backend.connect();
          go.arrive_and_wait();
          result[i] = mine->compareSet("leader", "", "rank" + std::to_string(i));
        } catch (const std::exception& e) {
          result[i] = std::string("error: ") + e.what();
        }
      });
  }
  int winners = 0;
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(result[i], result[0]) << "everyone learns the same leader";
    if (result[i] == "rank" + std::to_string(i)) ++winners;
  }
  EXPECT_EQ(winners, 1);
}

TYPED_TEST(StoreTest, CompareSetWakesAGetter) {
  auto getter = this->backend.connect();
  std::string got;
  std::jthread t([&] { got = getter->get("elected", 10s); });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(this->store->compareSet("elected", "", "me"), "me");
  t.join();
  EXPECT_EQ(got, "me");
}

TYPED_TEST(StoreTest, Remove) {
  Store& s = *this->store;
  s.set("gone", "v");
  EXPECT_TRUE(s.remove("gone"));
  EXPECT_FALSE(s.check({"gone"}));
  EXPECT_FALSE(s.remove("gone")) << "a second remove finds nothing";
  EXPECT_FALSE(s.remove("never-existed"));
  errorOf([&] { s.get("gone", 50ms); }, kumiTimeout);
  s.set("gone", "again");
  EXPECT_EQ(s.get("gone", 1s), "again");
  EXPECT_EQ(s.add("gone-counter", 2), 2);
  EXPECT_TRUE(s.remove("gone-counter"));
  EXPECT_EQ(s.add("gone-counter", 0), 0) << "a removed counter restarts at 0";
}

TYPED_TEST(StoreTest, BinaryValuesAndKeys) {
  Store& s = *this->store;
  auto other = this->backend.connect();
  std::string bin;
  for (int c = 0; c < 256; ++c) bin.push_back(static_cast<char>(c));
  bin += std::string("\0\0tail\0", 7);
  s.set("binary", bin);
  std::string got = other->get("binary", 1s);
  EXPECT_EQ(got.size(), bin.size());
  EXPECT_TRUE(got == bin) << "binary value altered";
  s.set("nul-only", std::string(3, '\0'));
  EXPECT_EQ(other->get("nul-only", 1s), std::string(3, '\0'));

  const std::string nulKey("key\0with\0nuls", 13);
  s.set(nulKey, "v");
  EXPECT_EQ(other->get(nulKey, 1s), "v");
  EXPECT_FALSE(other->check({"key"})) << "a key with NUL bytes is not its prefix";
  const std::string oddKey = "%2f/..//\xff\x80 key";
  s.set(oddKey, "odd");
  EXPECT_EQ(other->get(oddKey, 1s), "odd");
  EXPECT_FALSE(other->check({"%2f/..//"}));

  std::string big(1 << 20, '\0');
  std::mt19937_64 rng(99);
  for (std::size_t i = 0; i < big.size(); i += 8) {
    std::uint64_t r = rng();
    std::memcpy(&big[i], &r, 8);
  }
  s.set("one-mebibyte", big);
  std::string back = other->get("one-mebibyte", 5s);
  EXPECT_EQ(back.size(), big.size());
  EXPECT_TRUE(back == big) << "1 MiB value altered";
  EXPECT_EQ(s.get("binary", 1s), bin) << "the connection is still in sync after a large value";
}

TYPED_TEST(StoreTest, PrefixStoresAreIsolated) {
  std::shared_ptr<Store> base = this->store;
  kumi::PrefixStore a("jobA", base), b("jobB", base);
  a.set("k", "from-a");
  EXPECT_FALSE(b.check({"k"}));
  EXPECT_FALSE(base->check({"k"}));
  std::string msg = errorOf([&] { b.get("k", 100ms); }, kumiTimeout);
  b.set("k", "from-b");
  EXPECT_EQ(a.get("k", 1s), "from-a");
  EXPECT_EQ(b.get("k", 1s), "from-b");
  EXPECT_EQ(a.add("ctr", 1), 1);
  EXPECT_EQ(b.add("ctr", 10), 10);
  EXPECT_EQ(a.add("ctr", 0), 1);
  EXPECT_EQ(a.compareSet("cs", "", "a"), "a");
  EXPECT_EQ(b.compareSet("cs", "", "b"), "b");
  EXPECT_TRUE(a.remove("k"));
  EXPECT_FALSE(a.check({"k"}));
  EXPECT_EQ(b.get("k", 1s), "from-b") << "removing in one prefix leaves the other";
  EXPECT_NO_THROW(a.wait({"ctr", "cs"}, 1s));
  msg = errorOf([&] { b.wait({"ctr", "only-in-a"}, 100ms); }, kumiTimeout);
  EXPECT_TRUE(contains(msg, "only-in-a")) << msg;
  // Prefixes nest.
  kumi::PrefixStore gen0("gen0", std::make_shared<kumi::PrefixStore>("jobA", base));
  gen0.set("x", "1");
  EXPECT_FALSE(a.check({"x"}));
  EXPECT_EQ(gen0.get("x", 1s), "1");
  EXPECT_EQ(gen0.prefix(), "gen0");
  EXPECT_TRUE(contains(a.describe(), "jobA")) << a.describe();
}

// ---------------------------------------------------------------------------------------------
// TCP only.

// Connects a raw socket to the server and goes through the handshake (no secret), so that what
// the test sends next is read as requests. Strangers before the handshake: test_store_auth.cpp.
kumi::Fd rawConnect(const kumi::SockAddr& addr) {
  std::string err;
  kumi::Fd fd = kumi::tryConnect(addr, kumi::Deadline::after(5), &err);
  EXPECT_TRUE(fd.valid()) << err;
  namespace sp = kumi::store_protocol;
  sp::Greeting greeting;
  kumi::readFull(fd.get(), &greeting, sizeof greeting, kumi::Deadline::after(5), "greeting");
  EXPECT_EQ(sp::checkGreeting(greeting, false), sp::GreetingCheck::kOk);
  const sp::ClientHello hello = sp::makeClientHello("", {}, {});
  kumi::writeFull(fd.get(), &hello, sizeof hello, kumi::Deadline::after(5), "hello");
  return fd;
}

// True when the peer closes fd (EOF or reset) within `seconds`; discards any bytes received.
bool closedByPeer(int fd, double seconds) {
  auto deadline = kumi::Deadline::after(seconds);
  char buf[256];
  while (!deadline.expired()) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, std::max(1, deadline.msLeft()));
    if (rc <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return true;
  }
  return false;
}

void sendAll(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

// A parked wait that lists a key more than once, woken by a set of that key. Runs in a child
// process (death-test machinery) so that a crash of the in-process server is reported as this
// test's failure instead of killing the whole binary.
[[noreturn]] void parkedWaitWithRepeatedKeysThenExit() {
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  const std::string addr = server.address().str();
  kumi::TcpStoreClient waiter(addr, kumi::Deadline::after(5)), setter(addr, kumi::Deadline::after(5));
  int bad = 0;
  for (int i = 0; i < 100; ++i) {
    // Long keys (beyond the small-string buffer) make a use-after-free visible.
    const std::string k = "repeated-" + std::to_string(i) + std::string(40, 'k');
    std::thread t([&] {
      try {
        waiter.wait({k, "other-" + k, k, k}, 5s);
        if (waiter.add("counter-" + k, 1) != 1) ++bad;  // the connection must still be in sync
      } catch (const std::exception&) {
        ++bad;
      }
    });
    std::this_thread::sleep_for(3ms);
    setter.set("other-" + k, "o");
    setter.set(k, "v");
    t.join();
  }
  std::exit(bad == 0 ? 0 : 2);
}

TEST(TcpStoreDeathTest, ParkedWaitWithRepeatedKeysIsWokenSafely) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(parkedWaitWithRepeatedKeysThenExit(), ::testing::ExitedWithCode(0), "")
      << "wait({k, other, k, k}) parked on the TCP store, then set(k): the server must answer once and "
         "survive (a crash here is a use-after-free in TcpStoreServer's waiter bookkeeping; exit 2 means "
         "a wrong or missing reply)";
}

TEST(TcpStore, ClientRetriesUntilTheServerAppears) {
  const int port = freePort();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  std::unique_ptr<kumi::TcpStoreClient> client;
  std::string error;
  double connectedAfter = -1;
  const auto t0 = Clock::now();
  std::jthread t([&] {
    try {
      client = std::make_unique<kumi::TcpStoreClient>(addr, kumi::Deadline::after(10));
      connectedAfter = secondsSince(t0);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(300ms);
  kumi::TcpStoreServer server(loopback(port));
  server.start();
  t.join();
  ASSERT_TRUE(client) << error;
  EXPECT_GE(connectedAfter, 0.25) << "connected before the server existed?";
  EXPECT_LT(connectedAfter, 5.0) << "the retry backoff is too slow";
  client->set("k", "v");
  EXPECT_EQ(client->get("k", 1s), "v");
  EXPECT_TRUE(contains(client->describe(), addr)) << client->describe();
  EXPECT_EQ(client->serverAddress().str(), addr);
}

TEST(TcpStore, UnreachableStoreTimesOutNamingTheAddress) {
  const int port = freePort();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  const auto t0 = Clock::now();
  std::string msg = errorOf([&] { kumi::TcpStoreClient c(addr, kumi::Deadline::after(1)); }, kumiTimeout);
  const double waited = secondsSince(t0);
  EXPECT_TRUE(contains(msg, addr)) << msg;
  EXPECT_GE(waited, 0.9) << "gave up before the deadline";
  EXPECT_LT(waited, 2.5) << "overran the 1 s deadline";
}

TEST(TcpStore, BadAddressesAreInvalidArguments) {
  std::string msg =
      errorOf([] { kumi::TcpStoreClient c("127.0.0.1:0", kumi::Deadline::after(1)); }, kumiInvalidArgument);
  EXPECT_TRUE(contains(msg, "127.0.0.1:0")) << msg;
  msg = errorOf([] { kumi::TcpStoreClient c("no-port-here", kumi::Deadline::after(1)); }, kumiInvalidArgument);
  EXPECT_TRUE(contains(msg, "KUMI_STORE")) << msg;
}

TEST(TcpStore, ServerShutdownMidWaitFailsTheClient) {
  auto server = std::make_unique<kumi::TcpStoreServer>(loopback(0));
  server->start();
  kumi::TcpStoreClient client(server->address().str(), kumi::Deadline::after(5));
  client.set("warm", "up");
  std::atomic<int> code{-1};
  std::string msg;
  double failedAfter = -1;
  const auto t0 = Clock::now();
  std::jthread t([&] {
    try {
      client.get("never-set", 4s);
      code = kumiSuccess;
    } catch (const kumi::Error& e) {
      failedAfter = secondsSince(t0);
      msg = e.what();
      code = e.code();
    }
  });
  std::this_thread::sleep_for(300ms);
  server.reset();  // stops the loop and closes every connection
  t.join();
  EXPECT_TRUE(code == kumiRemoteError || code == kumiTimeout) << "code " << code << ": " << msg;
  EXPECT_LT(failedAfter, 3.0) << "the client noticed only at its own 4 s timeout (or later): " << msg;
  EXPECT_TRUE(contains(msg, "127.0.0.1")) << "should name the store: " << msg;
  // Later calls fail at once instead of hanging.
  const auto t1 = Clock::now();
  try {
    client.set("after", "shutdown");
    ADD_FAILURE() << "set succeeded on a dead store";
  } catch (const kumi::Error& e) {
    EXPECT_TRUE(e.code() == kumiRemoteError || e.code() == kumiTimeout) << e.what();
  }
  EXPECT_LT(secondsSince(t1), 2.0);
}

TEST(TcpStore, GarbageRequestDropsOnlyThatClient) {
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  const std::string addr = server.address().str();
  kumi::TcpStoreClient before(addr, kumi::Deadline::after(5));
  before.set("k", "v");
  // A client parked in a get while garbage arrives must still be answered afterwards.
  kumi::TcpStoreClient parked(addr, kumi::Deadline::after(5));
  std::string parkedGot;
  std::jthread waiter([&] {
    try {
      parkedGot = parked.get("set-after-garbage", 10s);
    } catch (const std::exception& e) {
      parkedGot = std::string("error: ") + e.what();
    }
  });

  std::mt19937 rng(1234);
  for (int round = 0; round < 30; ++round) {
    kumi::Fd raw = rawConnect(server.address());
    std::string junk(1 + rng() % 300, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    junk[0] = static_cast<char>(9 + rng() % 247);  // never a valid command byte (1..8)
    sendAll(raw.get(), junk);
    EXPECT_TRUE(closedByPeer(raw.get(), 3.0)) << "round " << round << ": the server kept a garbage client";
  }

  namespace sp = kumi::store_protocol;
  auto u32 = [](std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  const std::string oversized[] = {
      std::string(1, char(sp::kGet)) + u32(0xfffffff0u),                      // key length over the limit
      std::string(1, char(sp::kSet)) + u32(sp::kMaxKeyBytes + 1),             // key just over the limit
      std::string(1, char(sp::kWait)) + u32(sp::kMaxKeysPerWait + 1),         // too many keys
      std::string(1, char(sp::kSet)) + u32(1) + "k" + u32(sp::kMaxValueBytes + 1),  // value too large
  };
  for (const auto& req : oversized) {
    kumi::Fd raw = rawConnect(server.address());
    sendAll(raw.get(), req);
    EXPECT_TRUE(closedByPeer(raw.get(), 3.0)) << "oversized request of " << req.size() << " bytes not refused";
  }

  EXPECT_EQ(before.get("k", 1s), "v") << "an existing client is unaffected";
  kumi::TcpStoreClient after(addr, kumi::Deadline::after(5));
  after.set("set-after-garbage", "still serving");
  EXPECT_EQ(after.get("set-after-garbage", 1s), "still serving");
  waiter.join();
  EXPECT_EQ(parkedGot, "still serving");
}

TEST(TcpStore, ClientThatVanishesMidRequestDoesNotDisturbOthers) {
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  namespace sp = kumi::store_protocol;
  for (int i = 0; i < 10; ++i) {
    kumi::Fd raw = rawConnect(server.address());
    // Half a set request, then gone.
    std::string half(1, char(sp::kSet));
    std::uint32_t n = 100;
    half.append(reinterpret_cast<const char*>(&n), 4);
    half += "abc";
    sendAll(raw.get(), half);
  }
  // Parked gets and waits whose clients disappear before the key appears.
  for (int i = 0; i < 10; ++i) {
    kumi::Fd raw = rawConnect(server.address());
    sp::Writer w;
    if (i % 2) {
      w.u8(sp::kGet);
      w.str("nobody-sets-this");
    } else {
      w.u8(sp::kWait);
      w.strs({"nobody-sets-this", "n"});
    }
    w.u32(10000);
    sendAll(raw.get(), w.bytes());
  }
  std::this_thread::sleep_for(100ms);  // let the server park them, then notice the closes
  kumi::TcpStoreClient c(server.address().str(), kumi::Deadline::after(5));
  c.set("nobody-sets-this", "now");
  EXPECT_EQ(c.get("nobody-sets-this", 1s), "now");
  EXPECT_EQ(c.add("n", 1), 1);
}

TEST(TcpStore, TwoHundredConcurrentClients) {
  kumi::TcpStoreServer server(loopback(0));
  server.start();
  const std::string addr = server.address().str();
  constexpr int kClients = 200;
  std::vector<std::string> keys;
  for (int i = 0; i < kClients; ++i) keys.push_back("arrived/" + std::to_string(i));
  std::atomic<int> ok{0};
  std::mutex mu;
  std::vector<std::string> errors;
  const auto t0 = Clock::now();
  {
    std::latch go(1);
    std::vector<std::jthread> threads;
    threads.reserve(kClients);
    for (int i = 0; i < kClients; ++i)
      threads.emplace_back([&, i] {
        go.wait();
        try {
          kumi::TcpStoreClient c(addr, kumi::Deadline::after(30));
          c.set(keys[i], std::to_string(i));
          c.add("arrivals", 1);
          c.wait(keys, 30s);  // a rendezvous: everyone waits for everyone
          if (c.get(keys[(i + 1) % kClients], 5s) == std::to_string((i + 1) % kClients)) ++ok;
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back(e.what());
        }
      });
    go.count_down();
  }
  EXPECT_TRUE(errors.empty()) << errors.size() << " clients failed, first: " << errors.front();
  EXPECT_EQ(ok.load(), kClients);
  kumi::TcpStoreClient check(addr, kumi::Deadline::after(5));
  EXPECT_EQ(check.add("arrivals", 0), kClients);
  EXPECT_LT(secondsSince(t0), 30.0);
}

// ---------------------------------------------------------------------------------------------
// File store only.

TEST(FileStore, CreatesItsDirectory) {
  FileBackend tmp;
  const std::string nested = tmp.dir + "/a/b/c";
  kumi::FileStore s(nested);
  EXPECT_TRUE(std::filesystem::is_directory(nested));
  s.set("k", "v");
  EXPECT_EQ(kumi::FileStore(nested).get("k", 1s), "v");
  EXPECT_TRUE(contains(s.describe(), nested)) << s.describe();
  std::string msg = errorOf([&] { s.get("absent", 50ms); }, kumiTimeout);
  EXPECT_TRUE(contains(msg, nested)) << "should name the directory: " << msg;
}

// Keys near the file-name limit: a key is either stored and readable, or refused up front with a
// clear kumiInvalidArgument; never a late failure while writing the temporary file.
TEST(FileStore, LongKeysWorkOrAreRefusedClearly) {
  FileBackend tmp;
  kumi::FileStore s(tmp.dir);
  int accepted = 0;
  std::vector<std::size_t> badLengths;
  std::string firstBad;
  for (std::size_t len = 200; len <= 260; ++len) {
    const std::string key(len, 'a');
    const std::string value = std::to_string(len);
    try {
      s.set(key, value);
      ++accepted;
      EXPECT_EQ(s.get(key, 1s), value) << "key of " << len << " bytes";
    } catch (const kumi::Error& e) {
      if (e.code() != kumiInvalidArgument || !contains(e.what(), "too long")) {
        badLengths.push_back(len);
        if (firstBad.empty()) firstBad = e.what();
      }
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_TRUE(badLengths.empty()) << badLengths.size() << " key lengths (" << badLengths.front() << ".."
                                  << badLengths.back() << ") passed the length check but failed later: " << firstBad;
}

}  // namespace
