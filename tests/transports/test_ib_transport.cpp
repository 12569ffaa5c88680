// The RDMA transport in one process, on a real verbs device: transports of two "ranks" exchange
// their connection records over TCP on loopback and talk over real RC queue pairs with RDMA writes. Needs an RDMA
// port (Soft-RoCE in the VM lane, scripts/softroce-vm.sh); elsewhere every test skips and says
// why. Covers ordered delivery over several queue pairs and slot sizes, both directions at once,
// the live GID table, the call-stamp, size and checksum checks, a peer that goes away (named
// with its queue pair), one port per local rank when there are several (rails), and zero-copy
// sends from registered buffers, with a freed buffer's registration never reused, and
// GPUDirect RDMA from the CPU imitation's device memory (its host-inaccessible addresses make
// any host read of it fault, so every byte that arrives was read by the NIC).
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "../common/drive.hpp"
#include "../common/fake_device.hpp"
#include "core/error.hpp"
#include "rendezvous/store.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"
#include "transports/ib/gid_select.hpp"
#include "transports/ib/ib_transport.hpp"
#include "transports/ib/unmap_watch.hpp"
#include "transports/ib/verbs.hpp"
#include "transports/tcp/tcp_transport.hpp"

namespace kumi {
namespace {

using test::drive;

class IbTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ports_ = ib::findPorts(ib::HcaFilter{}, &why);
    if (ports_.empty()) GTEST_SKIP() << "needs an RDMA port (runs in the Soft-RoCE VM lane): " << why;
    server_ = std::make_unique<TcpStoreServer>(resolve("127.0.0.1", 0, "test").front());
    server_->start();
  }
  ib::IbOptions options() const {
    ib::IbOptions o;
    o.slots = 4;
    o.slotBytes = 64 << 10;  // small slots: messages span many, and the ring wraps often
    o.qpsPerConnection = 3;
    return o;
  }
  // A rank's RDMA transport, with the TCP transport that carries its connection records (kept
  // by the fixture: a test may drop the RDMA side alone, as a process would lose its queue pairs).
  std::unique_ptr<IbTransport> make(int rank, const ib::IbOptions& o, int port = 0, WireChecks checks = {}) {
    auto client = std::make_shared<TcpStoreClient>(server_->address().str(), Deadline::after(5));
    TcpOptions t;
    t.rank = rank;
    t.worldSize = 2;
    t.jobId = "job";
    t.commId = "c";
    t.listenAddress = resolve("127.0.0.1", 0, "test").front();
    t.handshakeSeconds = 5;
    tcp_.push_back(std::make_unique<TcpTransport>(t, std::make_shared<PrefixStore>(scope_, client)));
    IbTransportOptions io;
    io.rank = rank;
    io.port = port;
    io.ib = o;
    io.checks = checks;
    return std::make_unique<IbTransport>(io, *tcp_.back());
  }
  // Connects a (rank 0) and b (rank 1), as a collective between the pair.
  static void pair(IbTransport& a, IbTransport& b) {
    std::thread ca([&] { a.connect({1}, Deadline::after(20)); });
    b.connect({0}, Deadline::after(20));
    ca.join();
  }
  // Two connected ranks whose NICs may read and write device memory (no topology places rxe
  // beside a GPU, so only KUMI_IB_GDR_LEVEL=SYS allows it).
  struct GdrPair {
    std::unique_ptr<IbTransport> a, b;
  };
  GdrPair gdrPair() {
    ib::IbOptions o = options();
    o.gdrLevel = ib::GdrLevel::Sys;
    GdrPair p{make(0, o), make(1, o)};
    pair(*p.a, *p.b);
    return p;
  }
  std::vector<ib::PortInfo> ports_;
  std::unique_ptr<TcpStoreServer> server_;
  std::vector<std::unique_ptr<TcpTransport>> tcp_;
  std::string scope_ = "scope";
};

std::vector<char> pattern(std::size_t n, int seed) {
  std::vector<char> v(n);
  for (std::size_t j = 0; j < n; ++j) v[j] = static_cast<char>((seed * 131 + j * 7 + j / 4096) & 0xff);
  return v;
}

TEST_F(IbTransportTest, OrderedMessagesBothWaysOverSeveralQueuePairs) {
  auto a = make(0, options()), b = make(1, options());
  pair(*a, *b);
  // Empty, small, exactly one slot's payload, one byte more, and several rings' worth.
  const std::size_t payload = (64 << 10) - 64;
  const std::vector<std::size_t> sizes = {0, 100, payload, payload + 1, 3u << 20, 7, 1u << 20};
  std::vector<std::vector<char>> outA, outB, inA, inB;
  std::vector<Request> reqs(4 * sizes.size());
  std::vector<Request*> all;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    outA.push_back(pattern(sizes[i], static_cast<int>(i)));
    outB.push_back(pattern(sizes[i], static_cast<int>(i) + 100));
    inA.emplace_back(sizes[i], 0);
    inB.emplace_back(sizes[i], 0);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    a->postSend(1, outA[i].data(), sizes[i], &reqs[4 * i]);
    b->postSend(0, outB[i].data(), sizes[i], &reqs[4 * i + 1]);
    a->postRecv(1, inA[i].data(), sizes[i], &reqs[4 * i + 2]);
    b->postRecv(0, inB[i].data(), sizes[i], &reqs[4 * i + 3]);
  }
  for (auto& r : reqs) all.push_back(&r);
  drive({a.get(), b.get()}, all, 60);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(inB[i], outA[i]) << "message " << i << " of " << sizes[i] << " bytes, rank 0 to 1";
    EXPECT_EQ(inA[i], outB[i]) << "message " << i << " of " << sizes[i] << " bytes, rank 1 to 0";
  }
}

TEST_F(IbTransportTest, ChoosesARoutableRoceV2GidFromTheLiveTable) {
  const ib::PortInfo& p = ports_.front();
  if (!p.ethernet) GTEST_SKIP() << p.describe() << " is InfiniBand: GIDs are not chosen by content there";
  const auto table = ib::readGidTable(p.sysfsPortDir, p.gidTableLength);
  const auto choice = ib::selectGid(table, ib::GidPolicy{}, p.describe());
  EXPECT_EQ(choice.type, "RoCE v2") << choice.reason;
  // IPv4-mapped (::ffff:a.b.c.d): the default family is IPv4, and a link-local GID never wins.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(choice.gid[static_cast<std::size_t>(i)], 0) << choice.reason;
  EXPECT_EQ(choice.gid[10], 0xff);
  EXPECT_EQ(choice.gid[11], 0xff);
  auto t = make(0, options());
  EXPECT_NE(t->describe().find(choice.text), std::string::npos) << t->describe();
}

TEST_F(IbTransportTest, DifferentCallStampIsRefused) {
  auto a = make(0, options()), b = make(1, options());
  pair(*a, *b);
  a->setCallStamp({1, 2});
  b->setCallStamp({1, 3});
  std::vector<char> out(1000, 'x'), in(1000);
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  b->postRecv(0, in.data(), in.size(), &r);
  EXPECT_THROW(drive({a.get(), b.get()}, {&s, &r}, 20), CallMismatch);
}

TEST_F(IbTransportTest, SizeMismatchNamesBothSizes) {
  auto a = make(0, options()), b = make(1, options());
  pair(*a, *b);
  std::vector<char> out(300000, 'x'), in(200000);
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  b->postRecv(0, in.data(), in.size(), &r);
  try {
    drive({a.get(), b.get()}, {&s, &r}, 20);
    FAIL() << "a 300000-byte message matched a 200000-byte receive";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("300000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("200000"), std::string::npos) << e.what();
  }
}

TEST_F(IbTransportTest, ChecksumCatchesACorruptedPart) {
  WireChecks sender{true, 0}, receiver{true, 3};  // the receiver flips a bit of every third part
  auto a = make(0, options(), 0, sender), b = make(1, options(), 0, receiver);
  pair(*a, *b);
  auto out = pattern(1u << 20, 5);
  std::vector<char> in(out.size());
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  b->postRecv(0, in.data(), in.size(), &r);
  try {
    drive({a.get(), b.get()}, {&s, &r}, 20);
    FAIL() << "a corrupted part went unnoticed";
  } catch (const LinkError& e) {
    EXPECT_EQ(e.peer, 0);
    EXPECT_NE(std::string(e.what()).find("CRC32C"), std::string::npos) << e.what();
  }
}

TEST_F(IbTransportTest, PeerThatGoesAwayIsNamedWithItsQueuePair) {
  ib::IbOptions o = options();
  o.timeout = 10;  // ~4 ms per try, 2 retries: the survivor knows within a fraction of a second
  o.retryCount = 2;
  auto a = make(0, o), b = make(1, o);
  pair(*a, *b);
  b.reset();  // its queue pairs are destroyed: nothing answers a's writes any more
  auto out = pattern(4u << 20, 9);
  std::vector<char> in(1000);
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  a->postRecv(1, in.data(), in.size(), &r);
  const auto start = std::chrono::steady_clock::now();
  try {
    drive({a.get()}, {&s, &r}, 30);
    FAIL() << "a transfer to a vanished peer completed";
  } catch (const PeerLost& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.peer, 1);
    EXPECT_NE(what.find("QP "), std::string::npos) << what;
    EXPECT_NE(what.find("rank 1"), std::string::npos) << what;
    EXPECT_NE(what.find(ports_.front().device), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(IbTransportTest, PeerThatGoesAwayIsFoundByAReceiverToo) {
  // Nothing to send to the vanished peer: only the liveness probe can find out.
  ib::IbOptions o = options();
  o.timeout = 10;
  o.retryCount = 2;
  auto a = make(0, o), b = make(1, o);
  pair(*a, *b);
  b.reset();
  std::vector<char> in(1000);
  Request r;
  a->postRecv(1, in.data(), in.size(), &r);
  const auto start = std::chrono::steady_clock::now();
  try {
    drive({a.get()}, {&r}, 30);
    FAIL() << "a receive from a vanished peer completed";
  } catch (const PeerLost& e) {
    EXPECT_EQ(e.peer, 1);
    EXPECT_NE(std::string(e.what()).find("liveness probe"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(IbTransportTest, EachLocalRankTakesItsOwnPortWhenThereAreSeveral) {
  if (ports_.size() < 2) GTEST_SKIP() << "needs two RDMA ports (the VM lane has rxe0 and rxe1), found " << ports_.size();
  auto rail0 = make(0, options(), 0), rail1 = make(1, options(), 1);
  EXPECT_EQ(rail0->describe().rfind(ports_[0].describe(), 0), 0u) << rail0->describe();
  EXPECT_EQ(rail1->describe().rfind(ports_[1].describe(), 0), 0u) << rail1->describe();
  rail0.reset();
  rail1.reset();
  // A pair on the second rail moves data over the second port (new ranks: a new scope).
  scope_ = "second-rail";
  auto a = make(0, options(), 1), b = make(1, options(), 1);
  pair(*a, *b);
  auto out = pattern(2u << 20, 3);
  std::vector<char> in(out.size());
  Request s, r;
  a->postSend(1, out.data(), out.size(), &s);
  b->postRecv(0, in.data(), in.size(), &r);
  drive({a.get(), b.get()}, {&s, &r}, 30);
  EXPECT_EQ(in, out);
}

TEST_F(IbTransportTest, HcaFilterPicksThePort) {
  const std::string last = ports_.back().device;
  ib::IbOptions o = options();
  o.hca = ib::HcaFilter::parse("=" + last);
  auto t = make(0, o);
  EXPECT_EQ(t->describe().rfind(last + ":", 0), 0u) << t->describe();
  ib::IbOptions none = options();
  none.hca = ib::HcaFilter::parse("=no_such_device");
  try {
    make(0, none);
    FAIL() << "a filter that admits no device still gave a transport";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable RDMA port"), std::string::npos) << e.what();
  }
}

// A buffer that the NIC reads directly, at fixed addresses, so that a second buffer can be put
// where a freed one was (as an allocator would).
struct Mapping {
  char* data;
  std::size_t bytes;
  Mapping(std::size_t n, void* at = nullptr) : bytes(n) {
    void* p = ::mmap(at, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);
    if (p == MAP_FAILED || (at && p != at)) throw std::runtime_error("mmap at the old address failed");
    data = static_cast<char*>(p);
  }
  ~Mapping() { ::munmap(data, bytes); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

// One message of n bytes from a (rank 0) to b (rank 1); what b received.
std::vector<char> sendOnce(IbTransport& a, IbTransport& b, const char* data, std::size_t n) {
  std::vector<char> in(n);
  Request s, r;
  a.postSend(1, data, n, &s);
  b.postRecv(0, in.data(), n, &r);
  drive({&a, &b}, {&s, &r}, 60);
  return in;
}

TEST_F(IbTransportTest, RegisteredBuffersGoWithoutCopiesAndFreedOnesAreNotReused) {
  auto a = make(0, options()), b = make(1, options());
  pair(*a, *b);
  const std::size_t n = 3u << 20;
  auto send = [&](const char* data) { return sendOnce(*a, *b, data, n); };
  auto first = std::make_unique<Mapping>(n);
  void* where = first->data;
  const auto one = pattern(n, 1), two = pattern(n, 2);
  std::copy(one.begin(), one.end(), first->data);
  const auto h1 = a->registerBuffer(first->data, n);
  EXPECT_EQ(a->registrations(), 1u);
  EXPECT_EQ(send(first->data), one);
  const auto direct = a->zeroCopyBytes();
  // Every part but a short tail (cheaper to copy than to gather) goes from the buffer itself.
  EXPECT_GT(direct, n - (16u << 10));
  EXPECT_LE(direct, n);
  // Deregistered and freed; a new buffer at the same addresses, registered again. Reusing the
  // first registration would send the freed pages, which it still holds: the old pattern.
  EXPECT_TRUE(a->deregisterBuffer(h1));
  EXPECT_EQ(a->registrations(), 0u);
  first.reset();
  Mapping second(n, where);
  std::copy(two.begin(), two.end(), second.data);
  EXPECT_EQ(send(second.data), two) << "unregistered: through the staging slots";
  EXPECT_EQ(a->zeroCopyBytes(), direct);
  const auto h2 = a->registerBuffer(second.data, n);
  EXPECT_EQ(send(second.data), two) << "registered anew at the old addresses";
  EXPECT_EQ(a->zeroCopyBytes(), 2 * direct);
  EXPECT_TRUE(a->deregisterBuffer(h2));
  EXPECT_FALSE(a->deregisterBuffer(h2));
}

// The program frees a registered buffer without deregistering it and gets a new one at the same
// addresses. The registration still pins the freed pages; sending from it would put the old
// pattern on the wire. The unmap watch marks it stale, so the new buffer's bytes go (staged), and
// registering the new buffer makes a registration of its own.
TEST_F(IbTransportTest, BufferFreedWithoutDeregisteringIsNotSentFromItsOldPages) {
  std::string why;
  if (!ib::UnmapWatch::shared(&why)) GTEST_SKIP() << "userfaultfd is not available here: " << why;
  auto a = make(0, options()), b = make(1, options());
  pair(*a, *b);
  const std::size_t n = 3u << 20;
  auto send = [&](const char* data) { return sendOnce(*a, *b, data, n); };
  auto first = std::make_unique<Mapping>(n);
  void* where = first->data;
  const auto one = pattern(n, 1), two = pattern(n, 2);
  std::copy(one.begin(), one.end(), first->data);
  const auto h1 = a->registerBuffer(first->data, n);
  EXPECT_EQ(send(first->data), one);
  const auto direct = a->zeroCopyBytes();
  EXPECT_GT(direct, 0u);
  first.reset();  // munmap, no deregistration
  Mapping second(n, where);
  std::copy(two.begin(), two.end(), second.data);
  EXPECT_EQ(send(second.data), two) << "the stale registration must not be used";
  EXPECT_EQ(a->zeroCopyBytes(), direct) << "staged, not zero-copy";
  const auto h2 = a->registerBuffer(second.data, n);
  EXPECT_EQ(a->registrations(), 2u) << "a new registration beside the stale one";
  EXPECT_EQ(send(second.data), two);
  EXPECT_EQ(a->zeroCopyBytes(), 2 * direct) << "the new registration is used";
  EXPECT_TRUE(a->deregisterBuffer(h1)) << "the program's late deregistration still works";
  EXPECT_TRUE(a->deregisterBuffer(h2));
  EXPECT_EQ(a->registrations(), 0u);
}

TEST_F(IbTransportTest, DeviceMemoryIsReadByTheNicItselfInEverySize) {
  auto fake = std::make_shared<test::FakeDevice>();
  auto [a, b] = gdrPair();
  const std::size_t n = 300u << 10;  // several 64 KiB slots, and a short tail
  const auto bytes = pattern(n, 9);
  gpu::Memory dev = fake->deviceMemory(0, n);
  fake->copyNow(dev.get(), bytes.data(), n);
  EXPECT_FALSE(a->readsDevice(1));
  const std::uint64_t h = a->registerDeviceBuffer(dev.get(), n, *fake, 0);
  ASSERT_NE(h, 0u);
  EXPECT_TRUE(a->readsDevice(1));
  EXPECT_GT(fake->nicPins.load(), 0);
  // The whole buffer, then 100 bytes from inside it (below the host path's zero-copy size).
  const char* d = reinterpret_cast<const char*>(dev.get());
  EXPECT_EQ(sendOnce(*a, *b, d, n), bytes);
  EXPECT_EQ(a->deviceReadBytes(), n);
  EXPECT_EQ(sendOnce(*a, *b, d + 5, 100), std::vector<char>(bytes.begin() + 5, bytes.begin() + 105));
  EXPECT_EQ(a->deviceReadBytes(), n + 100);
  EXPECT_EQ(a->zeroCopyBytes(), 0u);
  EXPECT_TRUE(a->deregisterBuffer(h));
  EXPECT_FALSE(a->readsDevice(1));
  EXPECT_FALSE(a->deregisterBuffer(h));
}

// Runs both transports' progress for a while with nothing to wait for: an advert reaches the
// sender long before this is over.
void settle(IbTransport& a, IbTransport& b) {
  std::vector<Request*> done;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    a.progress(done);
    b.progress(done);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST_F(IbTransportTest, DeviceReceivesAreWrittenByTheNicIntoGpuMemoryWhenAdvertisedInTime) {
  auto fake = std::make_shared<test::FakeDevice>();
  auto [a, b] = gdrPair();
  const std::size_t n = 300u << 10;
  const auto bytes = pattern(n, 4);
  gpu::Memory src = fake->deviceMemory(0, n), dst = fake->deviceMemory(0, n);
  fake->copyNow(src.get(), bytes.data(), n);
  const auto ha = a->registerDeviceBuffer(src.get(), n, *fake, 0);
  const auto hb = b->registerDeviceBuffer(dst.get(), n, *fake, 0);
  ASSERT_NE(ha, 0u);
  ASSERT_NE(hb, 0u);
  auto deviceBytes = [&] {
    std::vector<char> out(n);
    fake->copyNow(out.data(), dst.get(), n);
    return out;
  };
  std::vector<char> host(n, 0);
  // The receive is offered, the offer reaches the sender, then the send from `from` is posted.
  auto offeredInTime = [&](const char* from) {
    Request s, r;
    b->postRecvDevice(0, host.data(), dst.get(), n, &r);
    settle(*a, *b);
    a->postSend(1, from, n, &s);
    drive({a.get(), b.get()}, {&s, &r}, 60);
    return r.landedOnDevice;
  };
  const char* fromDevice = reinterpret_cast<const char*>(src.get());
  // 1. The whole message lands in GPU memory, none of it in the host buffer.
  EXPECT_TRUE(offeredInTime(fromDevice));
  EXPECT_EQ(deviceBytes(), bytes);
  EXPECT_EQ(host, std::vector<char>(n, 0));
  EXPECT_EQ(a->directBytesSent(), n);
  EXPECT_EQ(b->directBytesReceived(), n);
  // 2. The send starts before the offer arrives: it goes through the ring into the host buffer,
  // and the late advert is never used for another message.
  const auto next = pattern(n, 5);
  fake->copyNow(src.get(), next.data(), n);
  Request s2, r2;
  a->postSend(1, src.get(), n, &s2);
  std::vector<Request*> done;
  for (int k = 0; k < 5; ++k) a->progress(done);  // its first parts are in the ring
  b->postRecvDevice(0, host.data(), dst.get(), n, &r2);
  drive({a.get(), b.get()}, {&s2, &r2}, 60);
  EXPECT_FALSE(r2.landedOnDevice);
  EXPECT_EQ(host, next);
  EXPECT_EQ(deviceBytes(), bytes) << "the device buffer was written for a receive that took the ring";
  // 3. Offered in time, but from host memory the NIC has no registration for: through the ring.
  std::fill(host.begin(), host.end(), 0);
  const auto third = pattern(n, 6);
  EXPECT_FALSE(offeredInTime(third.data()));
  EXPECT_EQ(host, third);
  // 4. And offered in time again after all that: direct once more.
  EXPECT_TRUE(offeredInTime(fromDevice));
  EXPECT_EQ(deviceBytes(), next);
  EXPECT_EQ(b->directBytesReceived(), 2 * n);
}

TEST_F(IbTransportTest, MoreDeviceReceivesThanAdvertEntriesAllArriveWhole) {
  // 20 receives offered before any send: 16 adverts at once, the rest as receives complete.
  auto fake = std::make_shared<test::FakeDevice>();
  auto [a, b] = gdrPair();
  constexpr std::size_t kCount = 20, kPart = 20000;
  const auto bytes = pattern(kCount * kPart, 8);
  gpu::Memory src = fake->deviceMemory(0, bytes.size()), dst = fake->deviceMemory(0, bytes.size());
  fake->copyNow(src.get(), bytes.data(), bytes.size());
  ASSERT_NE(a->registerDeviceBuffer(src.get(), bytes.size(), *fake, 0), 0u);
  ASSERT_NE(b->registerDeviceBuffer(dst.get(), bytes.size(), *fake, 0), 0u);
  std::vector<char> host(bytes.size(), 0);
  std::vector<Request> reqs(2 * kCount);
  std::vector<Request*> all;
  for (std::size_t k = 0; k < kCount; ++k)
    b->postRecvDevice(0, host.data() + k * kPart, reinterpret_cast<char*>(dst.get()) + k * kPart, kPart, &reqs[2 * k]);
  settle(*a, *b);
  for (std::size_t k = 0; k < kCount; ++k)
    a->postSend(1, reinterpret_cast<const char*>(src.get()) + k * kPart, kPart, &reqs[2 * k + 1]);
  for (auto& r : reqs) all.push_back(&r);
  drive({a.get(), b.get()}, all, 60);
  std::vector<char> onDevice(bytes.size());
  fake->copyNow(onDevice.data(), dst.get(), bytes.size());
  std::size_t direct = 0;
  for (std::size_t k = 0; k < kCount; ++k) {
    const auto& where = reqs[2 * k].landedOnDevice ? onDevice : host;
    direct += reqs[2 * k].landedOnDevice;
    EXPECT_TRUE(std::equal(bytes.begin() + k * kPart, bytes.begin() + (k + 1) * kPart, where.begin() + k * kPart))
        << "message " << k << (reqs[2 * k].landedOnDevice ? " (in GPU memory)" : " (through the ring)");
  }
  EXPECT_GE(direct, 16u) << "the first 16 were offered before any send started";
  EXPECT_EQ(b->directBytesReceived(), direct * kPart);
}

TEST_F(IbTransportTest, AnOfferedDeviceReceiveOfAnotherSizeIsAnErrorNamingBoth) {
  auto fake = std::make_shared<test::FakeDevice>();
  auto [a, b] = gdrPair();
  const std::size_t n = 64u << 10;
  gpu::Memory src = fake->deviceMemory(0, n), dst = fake->deviceMemory(0, n);
  ASSERT_NE(a->registerDeviceBuffer(src.get(), n, *fake, 0), 0u);
  ASSERT_NE(b->registerDeviceBuffer(dst.get(), n, *fake, 0), 0u);
  std::vector<char> host(n);
  Request s, r;
  b->postRecvDevice(0, host.data(), dst.get(), n, &r);
  settle(*a, *b);
  a->postSend(1, src.get(), n / 2, &s);  // the advert says n: never written into the device buffer
  try {
    drive({a.get(), b.get()}, {&s, &r}, 30);
    ADD_FAILURE() << "a send of half the size was taken";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(n / 2)), std::string::npos) << what;
    EXPECT_NE(what.find(std::to_string(n)), std::string::npos) << what;
  }
  EXPECT_EQ(a->directBytesSent(), 0u);
}

TEST_F(IbTransportTest, ADmaBufTheDriverCannotExportFallsBackToPeerMemory) {
  auto fake = std::make_shared<test::FakeDevice>();
  fake->offerDmabuf = true;
  ib::IbOptions o = options();
  o.gdrLevel = ib::GdrLevel::Sys;
  auto a = make(0, o);
  gpu::Memory dev = fake->deviceMemory(0, 1 << 20);
  EXPECT_NE(a->registerDeviceBuffer(dev.get(), 1 << 20, *fake, 0), 0u);
  EXPECT_EQ(fake->nicPins.load(), 1);
  fake->nicReadable = false;  // and with no peer memory either, the NIC's refusal is an error naming both
  auto b = make(0, o);
  try {
    b->registerDeviceBuffer(dev.get(), 1 << 20, *fake, 0);
    ADD_FAILURE() << "registered without dma-buf or peer memory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dma-buf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("peer memory"), std::string::npos) << e.what();
  }
}

TEST_F(IbTransportTest, DeviceMemoryIsNotRegisteredWhereThePolicyStages) {
  auto fake = std::make_shared<test::FakeDevice>();
  gpu::Memory dev = fake->deviceMemory(0, 1 << 20);
  // The default level (PXB) with no topology for the pair; checksums on; no peer memory.
  ib::IbOptions sys = options();
  sys.gdrLevel = ib::GdrLevel::Sys;
  WireChecks crc;
  crc.checksum = true;
  auto unknownPath = make(0, options());
  auto checksums = make(0, sys, 0, crc);
  EXPECT_EQ(unknownPath->registerDeviceBuffer(dev.get(), 1 << 20, *fake, 0), 0u);
  EXPECT_EQ(checksums->registerDeviceBuffer(dev.get(), 1 << 20, *fake, 0), 0u);
  fake->nicReadable = false;
  auto noPeerMemory = make(0, sys);
  EXPECT_EQ(noPeerMemory->registerDeviceBuffer(dev.get(), 1 << 20, *fake, 0), 0u);
  EXPECT_FALSE(unknownPath->readsDevice(1) || checksums->readsDevice(1) || noPeerMemory->readsDevice(1));
  EXPECT_EQ(fake->nicPins.load(), 0);
}

TEST_F(IbTransportTest, PeerThatNeverPublishesTimesOutNamingIt) {
  auto a = make(0, options());
  const auto start = std::chrono::steady_clock::now();
  try {
    a->connect({1}, Deadline::after(1.5));
    FAIL() << "connected to a rank that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiTimeout);
    EXPECT_NE(std::string(e.what()).find("connecting to rank 1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace kumi
