// KUMI_BIND: the CPUs each local rank gets on recorded machines, the fallbacks, the errors, and
// binding this very process.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <sched.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "topology/affinity.hpp"
#include "topology/binding.hpp"
#include "topology/machine_loader.hpp"

namespace {

using namespace kumi::topo;
using kumi::test::errorOf;

const Machine& twoSocket() {
  static const Machine m = loadMachineFromXml(std::string(KUMI_TOPOLOGY_FIXTURES) + "/two-socket-8gpu-4nic.xml");
  return m;
}

std::vector<std::string> cpusPerRank(const Machine& m, int localSize, BindMode mode) {
  std::vector<std::string> out;
  for (int r = 0; r < localSize; ++r) out.push_back(formatCpuList(planBinding(m, r, localSize, mode).cpus));
  return out;
}

using V = std::vector<std::string>;

TEST(BindNuma, EightRanksSplitEachSocketInFour) {
  EXPECT_EQ(cpusPerRank(twoSocket(), 8, BindMode::Numa),
            (V{"0-5,48-53", "24-29,72-77", "6-11,54-59", "30-35,78-83", "12-17,60-65", "36-41,84-89",
               "18-23,66-71", "42-47,90-95"}));
  BindPlan p = planBinding(twoSocket(), 5, 8, BindMode::Numa);
  EXPECT_EQ(p.numaNode, 1);
  EXPECT_EQ(p.share, 2);
  EXPECT_EQ(p.sharers, 4);
  EXPECT_EQ(p.describe(), "local rank 5/8: numa node 1 (slice 3/4) -> cpus 36-41,84-89");
}

TEST(BindNuma, ThreeRanksShareTheFirstSocketBetweenTwo) {
  EXPECT_EQ(cpusPerRank(twoSocket(), 3, BindMode::Numa), (V{"0-11,48-59", "24-47,72-95", "12-23,60-71"}));
}

TEST(BindNuma, OneRankGetsTheWholeFirstNode) {
  EXPECT_EQ(cpusPerRank(twoSocket(), 1, BindMode::Numa), (V{"0-23,48-71"}));
}

TEST(BindNuma, SlicesAreDisjointAndCoverEveryCpu) {
  for (int size : {2, 5, 7, 8, 13, 48}) {
    std::vector<int> seen(96, 0);
    for (int r = 0; r < size; ++r)
      for (int c : planBinding(twoSocket(), r, size, BindMode::Numa).cpus) ++seen[c];
    for (int c = 0; c < 96; ++c) EXPECT_EQ(seen[c], 1) << "cpu " << c << " with " << size << " ranks";
  }
}

TEST(BindNuma, MoreRanksThanCoresShareCoresInsteadOfGettingNone) {
  Machine m = loadMachineFromSynthetic("pack:1 core:2 pu:1");
  EXPECT_EQ(cpusPerRank(m, 5, BindMode::Numa), (V{"0", "0", "0", "1", "1"}));
}

TEST(BindDevice, EachRankFollowsItsGpu) {
  EXPECT_EQ(cpusPerRank(twoSocket(), 8, BindMode::Device),
            (V{"0-23,48-71", "0-23,48-71", "0-23,48-71", "0-23,48-71", "24-47,72-95", "24-47,72-95",
               "24-47,72-95", "24-47,72-95"}));
  BindPlan p = planBinding(twoSocket(), 6, 8, BindMode::Device);
  EXPECT_EQ(p.used, BindMode::Device);
  EXPECT_EQ(p.gpu, 6);
  EXPECT_TRUE(p.note.empty());
  EXPECT_EQ(p.describe(), "local rank 6/8: gpu 6 -> cpus 24-47,72-95");
}

TEST(BindDevice, FewerRanksThanGpusTakeTheFirstGpus) {
  EXPECT_EQ(cpusPerRank(twoSocket(), 3, BindMode::Device), (V{"0-23,48-71", "0-23,48-71", "0-23,48-71"}));
  EXPECT_EQ(cpusPerRank(twoSocket(), 1, BindMode::Device), (V{"0-23,48-71"}));
}

TEST(BindDevice, MoreRanksThanGpusWrapAround) {
  BindPlan p = planBinding(twoSocket(), 13, 16, BindMode::Device);
  EXPECT_EQ(p.gpu, 5);
  EXPECT_EQ(formatCpuList(p.cpus), "24-47,72-95");
}

TEST(BindDevice, GpuOffTheNumaNodesUsesItsPackage) {
  Machine m = loadMachineFromXml(std::string(KUMI_TOPOLOGY_FIXTURES) + "/snc2-2gpu-1nic.xml");
  EXPECT_EQ(cpusPerRank(m, 2, BindMode::Device), (V{"0-7", "0-15"}));
  EXPECT_EQ(cpusPerRank(m, 2, BindMode::Numa), (V{"0-7", "8-15"}));
}

TEST(BindDevice, WithoutGpusFallsBackToNuma) {
  Machine m = loadMachineFromSynthetic("pack:2 numa:1 core:4 pu:2");
  for (int size : {1, 3, 4}) {
    for (int r = 0; r < size; ++r) {
      BindPlan device = planBinding(m, r, size, BindMode::Device);
      BindPlan numa = planBinding(m, r, size, BindMode::Numa);
      EXPECT_EQ(device.requested, BindMode::Device);
      EXPECT_EQ(device.used, BindMode::Numa);
      EXPECT_EQ(device.cpus, numa.cpus) << "rank " << r << " of " << size;
      EXPECT_NE(device.note.find("no GPU found"), std::string::npos) << device.note;
    }
  }
  EXPECT_EQ(cpusPerRank(m, 4, BindMode::Device), (V{"0-3", "8-11", "4-7", "12-15"}));
}

TEST(BindOff, PlansNothing) {
  BindPlan p = planBinding(twoSocket(), 2, 8, BindMode::Off);
  EXPECT_EQ(p.used, BindMode::Off);
  EXPECT_TRUE(p.cpus.empty());
  EXPECT_EQ(p.describe(), "local rank 2/8: not bound (KUMI_BIND=off)");
}

TEST(BindPlanArgs, LocalRankOutsideTheLocalSizeIsAnError) {
  EXPECT_NE(errorOf([] { planBinding(twoSocket(), 8, 8, BindMode::Numa); }).find("local rank 8 is outside [0, 8)"),
            std::string::npos);
  EXPECT_NE(errorOf([] { planBinding(twoSocket(), 0, 0, BindMode::Numa); }).find("local size 0"),
            std::string::npos);
}

// Sets KUMI_BIND for one test and restores what was there.
class BindEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* v = std::getenv("KUMI_BIND")) saved_ = v;
  }
  void TearDown() override {
    if (saved_) ::setenv("KUMI_BIND", saved_->c_str(), 1);
    else ::unsetenv("KUMI_BIND");
  }
  static void set(const char* value) { ASSERT_EQ(::setenv("KUMI_BIND", value, 1), 0); }
  std::optional<std::string> saved_;
};

TEST_F(BindEnv, ModesParseCaseInsensitively) {
  ::unsetenv("KUMI_BIND");
  EXPECT_EQ(bindModeFromEnv(), BindMode::Off);
  set("");
  EXPECT_EQ(bindModeFromEnv(), BindMode::Off);
  set("NUMA");
  EXPECT_EQ(bindModeFromEnv(), BindMode::Numa);
  set("device");
  EXPECT_EQ(bindModeFromEnv(), BindMode::Device);
  set("off");
  EXPECT_EQ(bindModeFromEnv(), BindMode::Off);
}

TEST_F(BindEnv, BadValueNamesTheVariableAndTheAcceptedValues) {
  set("sockets");
  std::string msg = errorOf([] { bindModeFromEnv(); });
  EXPECT_EQ(msg, "KUMI_BIND='sockets' is not a binding mode: use off, numa or device");
  // The communicator's entry point refuses it before touching the topology.
  EXPECT_EQ(errorOf([] { applyBinding(0, 1); }), msg);
  EXPECT_NE(errorOf([] { parseBindMode("0-3", "--bind"); }).find("--bind='0-3'"), std::string::npos);
}

TEST_F(BindEnv, OffLeavesTheAffinityAlone) {
  set("off");
  CpuList before = currentAffinity();
  BindOutcome o = applyBinding(0, 4);
  EXPECT_FALSE(o.applied);
  EXPECT_EQ(o.plan.used, BindMode::Off);
  EXPECT_EQ(currentAffinity(), before);
}

// Binds this test process for real (on this machine) and puts the affinity back afterwards.
TEST_F(BindEnv, NumaBindsEveryThreadOfTheProcess) {
  CpuList before = currentAffinity();
  // A thread that exists before the binding must be bound too.
  std::mutex mu;
  std::condition_variable cv;
  bool check = false, done = false;
  CpuList seenByThread;
  std::thread other([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return check; });
    seenByThread = currentAffinity();
    done = true;
    cv.notify_all();
  });

  set("numa");
  Machine local = loadLocalMachine();
  // The last of two ranks per NUMA node: on a machine with two cores or more, a proper slice.
  int size = 2 * static_cast<int>(local.numaNodes.size());
  BindOutcome o = applyBinding(size - 1, size);
  EXPECT_TRUE(o.applied);
  EXPECT_EQ(o.plan.used, BindMode::Numa);
  EXPECT_FALSE(o.plan.cpus.empty());
  EXPECT_EQ(currentAffinity(), o.plan.cpus);
  EXPECT_NE(o.message.find("KUMI_BIND=numa: bound local rank"), std::string::npos) << o.message;
  {
    std::unique_lock lock(mu);
    check = true;
    cv.notify_all();
    cv.wait(lock, [&] { return done; });
  }
  other.join();
  EXPECT_EQ(seenByThread, o.plan.cpus);
  bindThisProcess(before);
  EXPECT_EQ(currentAffinity(), before);
}

TEST(Affinity, EmptyListIsRefused) {
  EXPECT_NE(errorOf([] { bindThisProcess({}); }).find("empty CPU list"), std::string::npos);
}

}  // namespace
