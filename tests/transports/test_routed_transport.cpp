// RoutedTransport's waits: which of the transports underneath it looks at, and for how long.
// A rank with peers on its host and elsewhere spins with non-blocking looks before it sleeps;
// those looks must reach the network transport too, whose readiness comes only through its
// event queue (a spinning rank once saw its TCP data only after 2000 looks at shared memory).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "transports/routed_transport.hpp"

namespace kumi {
namespace {

// Records the timeouts of its waits; requests complete only when the test says so.
class RecordingTransport final : public Transport {
 public:
  explicit RecordingTransport(std::vector<int>* waits) : waits_(waits) {}
  const char* name() const override { return "recording"; }
  void connect(const std::vector<int>&, const Deadline&) override {}
  void setCallStamp(const CallStamp&) override {}
  void postSend(int, const void*, std::size_t, Request* req) override { posted_.push_back(req); }
  void postRecv(int, void*, std::size_t, Request* req) override { posted_.push_back(req); }
  bool progress(std::vector<Request*>& completed) override {
    if (!finish_) return false;
    completed.insert(completed.end(), posted_.begin(), posted_.end());
    posted_.clear();
    finish_ = false;
    return true;
  }
  void waitForEvents(int timeoutMs) override { waits_->push_back(timeoutMs); }
  void interrupt() override {}
  void publishFailure(const std::string&) override {}
  void shutdown() override {}
  void cancelAll() override { posted_.clear(); }
  void finishAll() { finish_ = true; }

 private:
  std::vector<int>* waits_;
  std::vector<Request*> posted_;
  bool finish_ = false;
};

// Peer 1 on the first transport ("shared memory"), peer 2 on the second ("network").
struct Routed {
  std::vector<int> shmWaits, netWaits;
  RecordingTransport* shm = nullptr;
  RecordingTransport* net = nullptr;
  std::unique_ptr<RoutedTransport> routed;
  Routed() {
    auto a = std::make_unique<RecordingTransport>(&shmWaits);
    auto b = std::make_unique<RecordingTransport>(&netWaits);
    shm = a.get();
    net = b.get();
    std::vector<std::unique_ptr<Transport>> list;
    list.push_back(std::move(a));
    list.push_back(std::move(b));
    routed = std::make_unique<RoutedTransport>(std::move(list), std::vector<int>{0, 0, 1});
  }
  void clear() {
    shmWaits.clear();
    netWaits.clear();
  }
};

TEST(RoutedTransport, NonBlockingLookReachesEveryBusyTransport) {
  Routed r;
  Request toShm, fromNet;
  char buf[8];
  r.routed->postSend(1, buf, sizeof buf, &toShm);
  r.routed->postRecv(2, buf, sizeof buf, &fromNet);
  r.routed->waitForEvents(0);
  EXPECT_EQ(r.shmWaits, std::vector<int>{0});
  EXPECT_EQ(r.netWaits, std::vector<int>{0});
}

TEST(RoutedTransport, NonBlockingLookSkipsIdleTransportWhileAnotherIsBusy) {
  Routed r;
  Request fromNet;
  char buf[8];
  r.routed->postRecv(2, buf, sizeof buf, &fromNet);
  r.routed->waitForEvents(0);
  EXPECT_TRUE(r.shmWaits.empty());
  EXPECT_EQ(r.netWaits, std::vector<int>{0});
}

TEST(RoutedTransport, BlockingWaitGoesWhollyToTheOnlyBusyTransport) {
  Routed r;
  Request fromNet;
  char buf[8];
  r.routed->postRecv(2, buf, sizeof buf, &fromNet);
  r.routed->waitForEvents(150);
  EXPECT_TRUE(r.shmWaits.empty());
  EXPECT_EQ(r.netWaits, std::vector<int>{150});
}

TEST(RoutedTransport, BlockingWaitAlternatesShortSlicesWhenSeveralAreBusy) {
  Routed r;
  Request toShm, fromNet;
  char buf[8];
  r.routed->postSend(1, buf, sizeof buf, &toShm);
  r.routed->postRecv(2, buf, sizeof buf, &fromNet);
  r.routed->waitForEvents(200);
  r.routed->waitForEvents(200);
  // Each call sleeps briefly on one and looks at the other; the sleeping one alternates.
  ASSERT_EQ(r.shmWaits.size(), 2u);
  ASSERT_EQ(r.netWaits.size(), 2u);
  EXPECT_EQ(std::max(r.shmWaits[0], r.netWaits[0]), 1);
  EXPECT_EQ(std::min(r.shmWaits[0], r.netWaits[0]), 0);
  EXPECT_NE(r.shmWaits[0], r.shmWaits[1]);
}

TEST(RoutedTransport, CompletionsFreeTheTransportFromLaterLooks) {
  Routed r;
  Request toShm, fromNet;
  char buf[8];
  r.routed->postSend(1, buf, sizeof buf, &toShm);
  r.routed->postRecv(2, buf, sizeof buf, &fromNet);
  r.shm->finishAll();
  std::vector<Request*> done;
  EXPECT_TRUE(r.routed->progress(done));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0], &toShm);
  r.clear();
  r.routed->waitForEvents(50);
  EXPECT_TRUE(r.shmWaits.empty());
  EXPECT_EQ(r.netWaits, std::vector<int>{50});
}

TEST(RoutedTransport, IdleLooksAtEveryTransportForFailures) {
  Routed r;
  r.routed->waitForEvents(100);
  EXPECT_EQ(r.shmWaits, std::vector<int>{0});
  EXPECT_EQ(r.netWaits, std::vector<int>{0});
}

}  // namespace
}  // namespace kumi
