// Who may join a job (rendezvous/join.hpp): rank claims that let a replaced pod in and refuse a
// duplicate or a stale process, and the restart-generation record. On the file store, which
// keeps the same contract as the TCP one (test_store.cpp) and needs no server.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <thread>

#include "../common/test_util.hpp"
#include "rendezvous/bootstrap.hpp"
#include "rendezvous/file_store.hpp"
#include "rendezvous/join.hpp"

namespace {

using kumi::Claim;
using kumi::Incarnation;
using kumi::test::errorOf;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class Join : public ::testing::Test {
 protected:
  Join() {
    char tmpl[] = "/tmp/kumi-join-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    store_ = std::make_shared<kumi::FileStore>(dir_);
  }
  ~Join() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static Incarnation process(const std::string& token, const std::string& host, const std::string& hostId, long pid,
                             int number = 0) {
    return Incarnation{token, host, hostId, pid, number};
  }
  std::string dir_;
  std::shared_ptr<kumi::Store> store_;
};

const kumi::PidAlive kAlive = [](long) { return true; };
const kumi::PidAlive kDead = [](long) { return false; };

TEST_F(Join, IncarnationRoundTripsAndRejectsGarbage) {
  Incarnation a = process("t1", "pod-3", "boot-ipc", 42, 7);
  auto b = Incarnation::decode(a.encode());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->token, "t1");
  EXPECT_EQ(b->hostname, "pod-3");
  EXPECT_EQ(b->hostId, "boot-ipc");
  EXPECT_EQ(b->pid, 42);
  EXPECT_EQ(b->number, 7);
  for (const char* bad : {"", "a\nb", "t\nh\ni\nnotapid\n0", "t\nh\ni\n1\n-1", "t\nh\ni\n1\n2\n3"})
    EXPECT_FALSE(Incarnation::decode(bad).has_value()) << bad;
  Incarnation mine = Incarnation::mine("id", 2);
  EXPECT_EQ(mine.pid, static_cast<long>(::getpid()));
  EXPECT_EQ(mine.token.size(), 16u);
  EXPECT_NE(mine.token, Incarnation::mine("id", 2).token) << "each claim has its own token";
}

TEST_F(Join, AFreeRankIsClaimedAndCountedOnce) {
  auto me = process("a", "pod-1", "h1", 10);
  EXPECT_EQ(kumi::claimRank(*store_, 1, me, "formed", kAlive), Claim::kNew);
  // The same process asking again (a retry) still holds it.
  EXPECT_EQ(kumi::claimRank(*store_, 1, me, "formed", kAlive), Claim::kNew);
  EXPECT_EQ(kumi::claimRank(*store_, 2, process("b", "pod-2", "h2", 11), "formed", kAlive), Claim::kNew);
}

TEST_F(Join, TwoLiveProcessesWithOneRankAreRefusedNamingBoth) {
  kumi::claimRank(*store_, 3, process("a", "pod-a", "h1", 100), "formed", kAlive);
  std::string e = errorOf([&] { kumi::claimRank(*store_, 3, process("b", "pod-b", "h2", 200), "formed", kAlive); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(e, "rank 3 is already held by pid 100 on pod-a")) << e;
  EXPECT_TRUE(contains(e, "pid 200 on pod-b (incarnation 0) claims it too")) << e;
  EXPECT_TRUE(contains(e, "two processes were given rank 3")) << e;
  // On one host, a live pid is a duplicate too (two launchers gave the same rank).
  std::string same = errorOf([&] { kumi::claimRank(*store_, 3, process("c", "pod-a", "h1", 101), "formed", kAlive); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(same, "already held by pid 100")) << same;
}

TEST_F(Join, AnExitedProcessOnTheSameHostIsReplaced) {
  kumi::claimRank(*store_, 0, process("a", "node", "h1", 100), "formed", kAlive);
  EXPECT_EQ(kumi::claimRank(*store_, 0, process("b", "node", "h1", 101), "formed", kDead), Claim::kReplaced);
  // Now b holds it: a third, live, is refused naming b.
  std::string e = errorOf([&] { kumi::claimRank(*store_, 0, process("c", "node2", "h2", 7), "formed", kAlive); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(e, "held by pid 101 on node")) << e;
}

TEST_F(Join, ARecreatedPodWithTheSameNameIsLetIn) {
  kumi::claimRank(*store_, 2, process("a", "job-2", "boot-ipcA", 1), "formed", kAlive);
  EXPECT_EQ(kumi::claimRank(*store_, 2, process("b", "job-2", "boot-ipcB", 1), "formed", kAlive), Claim::kReplaced);
}

TEST_F(Join, IncarnationNumbersOrderRestartsOfARank) {
  kumi::claimRank(*store_, 5, process("a", "job-5", "h1", 1, 0), "formed", kAlive);
  // A later incarnation replaces the earlier one even on another host and while it looks alive.
  EXPECT_EQ(kumi::claimRank(*store_, 5, process("b", "node-9", "h9", 2, 1), "formed", kAlive), Claim::kReplaced);
  // The earlier one, coming back (a zombie pod), is told it is left over.
  std::string e = errorOf([&] { kumi::claimRank(*store_, 5, process("a2", "job-5", "h1", 1, 0), "formed", kDead); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(e, "is an earlier incarnation")) << e;
  EXPECT_TRUE(contains(e, "pid 2 on node-9 (incarnation 1) has replaced it")) << e;
}

TEST_F(Join, NoReplacementOnceTheJobFormed) {
  kumi::claimRank(*store_, 1, process("a", "job-1", "h1", 1), "formed", kAlive);
  store_->set("formed", "1");
  std::string e = errorOf([&] { kumi::claimRank(*store_, 1, process("b", "job-1", "h2", 1), "formed", kAlive); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(e, "arrived after the job formed")) << e;
}

TEST_F(Join, ConcurrentClaimantsElectExactlyOne) {
  constexpr int kClaimants = 8;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kClaimants);
  std::vector<int> won(kClaimants, 0);
  for (int i = 0; i < kClaimants; ++i)
    threads.emplace_back([&, i] {
      auto store = std::make_shared<kumi::FileStore>(dir_);
      const std::string n = std::to_string(i);
      try {
        kumi::claimRank(*store, 0, process(n, "host" + n, "h" + n, i + 1), "formed", kAlive);
        won[i] = 1;
      } catch (const kumi::Error& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  int winners = 0;
  for (int i = 0; i < kClaimants; ++i) {
    winners += won[i];
    if (!won[i]) {
      EXPECT_TRUE(contains(errors[i], "two processes were given rank 0")) << errors[i];
    }
  }
  EXPECT_EQ(winners, 1);
}

TEST_F(Join, GenerationsMoveForwardOnly) {
  kumi::enterGeneration(store_, "job", 0, 0, "pod-0");
  kumi::enterGeneration(store_, "job", 0, 1, "pod-1");  // the same generation: fine
  // Generation 1 arrives: the ranks of generation 0 still forming their job hear why.
  kumi::enterGeneration(store_, "job", 1, 2, "pod-2");
  kumi::PrefixStore earlier("kumi/job/g0/c0", store_);
  std::string notice = kumi::readFailureNotice(earlier);
  EXPECT_TRUE(contains(notice, "job 'job' restarted as generation 1 (rank 2 on pod-2 arrived)")) << notice;
  // A process of generation 0 arriving now is refused.
  std::string e = errorOf([&] { kumi::enterGeneration(store_, "job", 0, 3, "pod-3"); }, kumiInvalidUsage);
  EXPECT_TRUE(contains(e, "rank 3 on pod-3 belongs to restart generation 0 of job 'job'")) << e;
  EXPECT_TRUE(contains(e, "restarted as generation 1")) << e;
  // Other jobs on the same store are unaffected.
  kumi::enterGeneration(store_, "other", 0, 0, "x");
}

}  // namespace
