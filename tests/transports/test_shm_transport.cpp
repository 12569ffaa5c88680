// The shared-memory transport in one process: "ranks" are threads with their own transports,
// set up through a real store server on loopback, with segments in a private directory. Covers
// ordered delivery through slots and by cross-memory attach, segment hygiene (0600, unlinked
// after set-up, leftovers of dead owners reclaimed, live ones refused), a directory too small,
// host ids that lie, size mismatches and a peer that closes.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <thread>

#include "../common/drive.hpp"
#include "core/error.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"
#include "transports/shm/segment.hpp"
#include "transports/shm/shm_transport.hpp"

namespace kumi {
namespace {

using test::drive;

namespace fs = std::filesystem;

class ShmTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TcpStoreServer>(resolve("127.0.0.1", 0, "test").front());
    server_->start();
    char tmpl[] = "/dev/shm/kumi-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::shared_ptr<Store> store(const std::string& scope) {
    auto client = std::make_shared<TcpStoreClient>(server_->address().str(), Deadline::after(5));
    return std::make_shared<PrefixStore>(scope, client);
  }
  ShmOptions options(int rank, std::vector<int> peers, bool cma = true) {
    ShmOptions o;
    o.rank = rank;
    o.localPeers = std::move(peers);
    o.dir = dir_;
    o.segmentPrefix = "kumi-test-g0-c";
    o.channelBytes = 512 << 10;
    o.crossMemoryAttach = cma;
    return o;
  }
  // Builds transports for all ranks at once (set-up is collective); a rank that throws leaves
  // a null transport and its message in errors.
  std::vector<std::unique_ptr<ShmTransport>> makeAll(std::vector<ShmOptions> opts, std::vector<std::string>* errors = nullptr,
                                                     const std::string& scope = "s") {
    std::vector<std::unique_ptr<ShmTransport>> ts(opts.size());
    std::vector<std::string> errs(opts.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < opts.size(); ++i)
      threads.emplace_back([&, i] {
        try {
          auto st = store(scope);
          ts[i] = std::make_unique<ShmTransport>(opts[i], *st, Deadline::after(10), nullptr);
        } catch (const Error& e) {
          errs[i] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    if (errors) *errors = errs;
    for (std::size_t i = 0; i < opts.size() && !errors; ++i) EXPECT_EQ(errs[i], "") << "rank " << i;
    return ts;
  }
  std::unique_ptr<TcpStoreServer> server_;
  std::string dir_;
};

std::size_t entriesIn(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST_F(ShmTransportTest, OrderedMessagesThroughSlotsAndCrossMemoryAttach) {
  for (bool cma : {true, false}) {
    auto ts = makeAll({options(0, {1}, cma), options(1, {0}, cma)}, nullptr, cma ? "cma" : "slots");
    ASSERT_TRUE(ts[0] && ts[1]);
    EXPECT_EQ(ts[0]->connectedPeers(), std::vector<int>{1});
    // This test runs as one process, which may always read its own memory.
    EXPECT_EQ(ts[0]->crossMemoryPeers().size(), cma ? 1u : 0u);
    EXPECT_EQ(entriesIn(dir_), 0u) << "segments must be unlinked once both sides mapped them";
    // Around one slot, and around the ring (8 slots): larger messages go by descriptor.
    const std::size_t slot = (512 << 10) / 8, ring = 8 * slot;
    std::vector<std::size_t> sizes = {0, 1, 100, slot - 1, slot, slot + 1, ring, ring + 1, 3u << 20, 7, 1u << 20};
    std::vector<std::vector<char>> out(sizes.size()), in(sizes.size()), back(sizes.size()), backIn(sizes.size());
    std::vector<Request> sreq(sizes.size()), rreq(sizes.size()), sreq2(sizes.size()), rreq2(sizes.size());
    std::vector<Request*> all;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      out[i].resize(sizes[i]);
      back[i].resize(sizes[i]);
      for (std::size_t j = 0; j < sizes[i]; ++j) {
        out[i][j] = static_cast<char>((i * 31 + j * 7) & 0x7f);
        back[i][j] = static_cast<char>((i * 17 + j * 3) & 0x7f);
      }
      in[i].assign(sizes[i], 0);
      backIn[i].assign(sizes[i], 0);
      // Both directions at once.
      ts[0]->postSend(1, out[i].data(), sizes[i], &sreq[i]);
      ts[1]->postRecv(0, in[i].data(), sizes[i], &rreq[i]);
      ts[1]->postSend(0, back[i].data(), sizes[i], &sreq2[i]);
      ts[0]->postRecv(1, backIn[i].data(), sizes[i], &rreq2[i]);
      for (Request* r : {&sreq[i], &rreq[i], &sreq2[i], &rreq2[i]}) all.push_back(r);
    }
    drive({ts[0].get(), ts[1].get()}, all);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_EQ(in[i], out[i]) << "message " << i << " of " << sizes[i] << " bytes, cma " << cma;
      EXPECT_EQ(backIn[i], back[i]) << "reverse message " << i << ", cma " << cma;
    }
  }
}

TEST_F(ShmTransportTest, FourRanksAllPairs) {
  std::vector<ShmOptions> opts;
  for (int r = 0; r < 4; ++r) {
    std::vector<int> peers;
    for (int p = 0; p < 4; ++p)
      if (p != r) peers.push_back(p);
    opts.push_back(options(r, peers));
  }
  auto ts = makeAll(opts);
  std::vector<Transport*> raw;
  for (auto& t : ts) raw.push_back(t.get());
  const std::size_t bytes = 200000;
  std::vector<std::vector<std::uint8_t>> send(16), recv(16);
  std::vector<Request> reqs(32);
  std::vector<Request*> all;
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 4; ++b) {
      if (a == b) continue;
      const std::size_t k = static_cast<std::size_t>(a * 4 + b);
      send[k].assign(bytes, static_cast<std::uint8_t>(a * 16 + b));
      recv[k].assign(bytes, 0);
      ts[static_cast<std::size_t>(a)]->postSend(b, send[k].data(), bytes, &reqs[2 * k]);
      ts[static_cast<std::size_t>(b)]->postRecv(a, recv[k].data(), bytes, &reqs[2 * k + 1]);
      all.push_back(&reqs[2 * k]);
      all.push_back(&reqs[2 * k + 1]);
    }
  drive(raw, all);
  for (std::size_t k = 0; k < 16; ++k) EXPECT_EQ(recv[k], send[k]) << "pair " << k / 4 << "->" << k % 4;
}

TEST_F(ShmTransportTest, SizeMismatchNamesBothSizes) {
  auto ts = makeAll({options(0, {1}), options(1, {0})});
  std::vector<char> out(100), in(200);
  Request s, r;
  ts[0]->postSend(1, out.data(), out.size(), &s);
  ts[1]->postRecv(0, in.data(), in.size(), &r);
  try {
    drive({ts[0].get(), ts[1].get()}, {&s, &r});
    FAIL() << "a size mismatch was delivered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("100 bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("200"), std::string::npos) << e.what();
  }
}

TEST_F(ShmTransportTest, PeerThatClosesFailsTheWaiterFast) {
  auto ts = makeAll({options(0, {1}), options(1, {0})});
  std::vector<char> in(10);
  Request r;
  ts[1]->postRecv(0, in.data(), in.size(), &r);
  ts[0]->shutdown();
  const auto start = std::chrono::steady_clock::now();
  try {
    drive({ts[1].get()}, {&r});
    FAIL() << "a receive from a closed peer completed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiRemoteError);
    EXPECT_NE(std::string(e.what()).find("rank 0 closed"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(ShmTransportTest, HostIdsThatLieFallBackInsteadOfFailing) {
  // Two "hosts" that claim one host id: each rank's segments live where the other cannot see
  // them (separate directories stand for separate machines). Neither may use shared memory.
  auto a = options(0, {1}), b = options(1, {0});
  b.dir = dir_ + "/other";
  fs::create_directory(b.dir);
  auto ts = makeAll({a, b});
  ASSERT_TRUE(ts[0] && ts[1]);
  EXPECT_TRUE(ts[0]->connectedPeers().empty());
  EXPECT_TRUE(ts[1]->connectedPeers().empty());
  EXPECT_EQ(entriesIn(b.dir), 0u) << "the segment must be removed even when no peer mapped it";
}

TEST_F(ShmTransportTest, SegmentsAreOwnerOnlyAndLeftoversOfDeadOwnersAreReclaimed) {
  {
    auto seg = shm::Segment::create(dir_, "kumi-mode", 4096);
    struct stat st {};
    ASSERT_EQ(::stat(seg.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_EQ(entriesIn(dir_), 0u) << "a segment never unlinked by hand goes with its owner";
  // A leftover whose owner is gone: a child process writes one and dies without cleaning up.
  pid_t child = ::fork();
  if (child == 0) {
    auto seg = shm::Segment::create(dir_, "kumi-leftover", 4096);
    std::_Exit(0);  // skips destructors, as a crash would
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(fs::exists(dir_ + "/kumi-leftover"));
  auto again = shm::Segment::create(dir_, "kumi-leftover", 8192);  // same name: replaced
  EXPECT_EQ(again.size(), 8192u);
  again.unlink();
  // A leftover of another name is swept when any segment is created in the directory.
  child = ::fork();
  if (child == 0) {
    auto seg = shm::Segment::create(dir_, "kumi-stale", 4096);
    std::_Exit(0);
  }
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto other = shm::Segment::create(dir_, "kumi-fresh", 4096);
  EXPECT_FALSE(fs::exists(dir_ + "/kumi-stale"));
  // A segment whose owner lives (this process) is never taken over.
  try {
    auto clash = shm::Segment::create(dir_, "kumi-fresh", 4096);
    FAIL() << "took over a live owner's segment";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exists and is in use"), std::string::npos) << e.what();
  }
  // Liveness is the creator's lock, not its pid: a leftover naming a live pid (1) but unlocked,
  // as one from another PID namespace or a reused pid would be, is still reclaimed.
  {
    shm::SegmentOwner o = shm::currentOwner();
    o.pid = 1;
    std::ofstream(dir_ + "/kumi-foreign", std::ios::binary).write(reinterpret_cast<const char*>(&o), sizeof o);
    ::chmod((dir_ + "/kumi-foreign").c_str(), 0600);
  }
  EXPECT_EQ(shm::reclaimLeftovers(dir_), 1);
  EXPECT_FALSE(fs::exists(dir_ + "/kumi-foreign"));
}

TEST_F(ShmTransportTest, PlantedFilesNeitherHangNorGetUsed) {
  // A FIFO under a kumi name would block a plain open() forever.
  ASSERT_EQ(::mkfifo((dir_ + "/kumi-fifo").c_str(), 0600), 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(shm::reclaimLeftovers(dir_), 0);
  try {
    auto seg = shm::Segment::create(dir_, "kumi-fifo", 4096);
    FAIL() << "created a segment over a FIFO";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kumi-fifo"), std::string::npos) << e.what();
  }
  EXPECT_THROW(shm::Segment::attach(dir_, "kumi-fifo"), Error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(fs::exists(dir_ + "/kumi-fifo")) << "someone else's file must be left alone";
}

TEST_F(ShmTransportTest, DirectoryTooSmallIsAClearErrorOnEveryRank) {
  // A small tmpfs stands for a container's 64 MiB /dev/shm (here 64 KiB, for 512 KiB rings).
  const std::string small = dir_ + "/small";
  fs::create_directory(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k,mode=0700") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "; needs root): not checked";
  std::vector<ShmOptions> opts = {options(0, {1}), options(1, {0})};
  for (auto& o : opts) o.dir = small;
  std::vector<std::string> errors;
  auto ts = makeAll(opts, &errors);
  ::umount2(small.c_str(), MNT_DETACH);
  for (std::size_t r = 0; r < 2; ++r) {
    EXPECT_FALSE(ts[r]) << "rank " << r << " started without room for its segment";
    EXPECT_NE(errors[r].find("too small"), std::string::npos) << "rank " << r << ": " << errors[r];
    EXPECT_NE(errors[r].find("KUMI_TRANSPORT=tcp"), std::string::npos) << errors[r];
  }
}

}  // namespace
}  // namespace kumi
