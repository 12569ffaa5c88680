// KUMI_* environment parsing, kumiConfig_t precedence, and validation messages.
#include <gtest/gtest.h>

#include "../common/test_util.hpp"

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include <kumi/kumi.hpp>

#include "core/config.hpp"
#include "core/env.hpp"

namespace {

using kumi::test::errorOf;

const char* const kVars[] = {"KUMI_RANK",          "KUMI_WORLD_SIZE",    "KUMI_STORE",      "KUMI_STORE_SERVE",
                             "KUMI_JOB_ID",        "KUMI_GENERATION",    "KUMI_TIMEOUT",    "KUMI_SOCKET_IFNAME",
                             "KUMI_SOCKET_NSOCKS", "KUMI_SOCKET_BUFFER", "KUMI_CHUNK_SIZE", "KUMI_ALGO",
                             "KUMI_TRANSPORT",     "KUMI_HOSTID",        "KUMI_TEST_VAR"};

// Clears every variable Config reads (the tests may run under kumirun) and restores them after.
class ConfigEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVars) {
      if (const char* old = std::getenv(v)) saved_[v] = old;
      ::unsetenv(v);
    }
  }
  void TearDown() override {
    for (const char* v : kVars) {
      auto it = saved_.find(v);
      if (it != saved_.end()) ::setenv(v, it->second.c_str(), 1);
      else ::unsetenv(v);
    }
  }
  static void set(const char* name, const char* value) { ASSERT_EQ(::setenv(name, value, 1), 0); }

  std::map<std::string, std::string> saved_;
};

TEST_F(ConfigEnv, TimeoutThatIsNotANumberNamesTheVariable) {
  set("KUMI_TIMEOUT", "abc");
  std::string msg = errorOf([] { kumi::Config::resolve(nullptr); });
  EXPECT_NE(msg.find("KUMI_TIMEOUT"), std::string::npos) << msg;
  EXPECT_NE(msg.find("abc"), std::string::npos) << msg;
  for (const char* bad : {"10s", "1e", "nan", "--1"}) {
    set("KUMI_TIMEOUT", bad);
    msg = errorOf([] { kumi::Config::resolve(nullptr); });
    EXPECT_NE(msg.find("KUMI_TIMEOUT"), std::string::npos) << bad << ": " << msg;
  }
}

TEST_F(ConfigEnv, TimeoutIsParsedAsSeconds) {
  set("KUMI_TIMEOUT", "2.5");
  EXPECT_DOUBLE_EQ(kumi::Config::resolve(nullptr).timeoutSeconds, 2.5);
  set("KUMI_TIMEOUT", "30");
  EXPECT_DOUBLE_EQ(kumi::Config::resolve(nullptr).timeoutSeconds, 30.0);
  ::unsetenv("KUMI_TIMEOUT");
  EXPECT_DOUBLE_EQ(kumi::Config::resolve(nullptr).timeoutSeconds, 600.0);  // documented default
}

TEST_F(ConfigEnv, IntegersMustBeIntegers) {
  for (const char* bad : {"1x", "x", "1.0", "99999999999999999999", " "}) {
    set("KUMI_RANK", bad);
    std::string msg = errorOf([] { kumi::Config::resolve(nullptr); });
    EXPECT_NE(msg.find("KUMI_RANK"), std::string::npos) << "value '" << bad << "': " << msg;
  }
  ::unsetenv("KUMI_RANK");
  set("KUMI_WORLD_SIZE", "eight");
  std::string msg = errorOf([] { kumi::Config::resolve(nullptr); });
  EXPECT_NE(msg.find("KUMI_WORLD_SIZE"), std::string::npos) << msg;
  EXPECT_NE(msg.find("eight"), std::string::npos) << msg;
}

// A value that does not fit the setting's type must not wrap silently (4294967297 -> rank 1).
TEST_F(ConfigEnv, IntegersOutsideIntRangeAreRejected) {
  set("KUMI_WORLD_SIZE", "2");
  set("KUMI_STORE", "127.0.0.1:29500");
  set("KUMI_RANK", "4294967297");
  std::string msg = errorOf([] { kumi::Config::resolve(nullptr).validate(); });
  EXPECT_NE(msg.find("KUMI_RANK"), std::string::npos) << msg;
  set("KUMI_RANK", "0");
  set("KUMI_SOCKET_NSOCKS", "4294967300");
  msg = errorOf([] { kumi::Config::resolve(nullptr).validate(); });
  EXPECT_NE(msg.find("KUMI_SOCKET_NSOCKS"), std::string::npos) << msg;
}

TEST_F(ConfigEnv, EnvHelpers) {
  EXPECT_FALSE(kumi::envString("KUMI_TEST_VAR").has_value());
  set("KUMI_TEST_VAR", "");
  EXPECT_FALSE(kumi::envString("KUMI_TEST_VAR").has_value()) << "empty counts as unset";
  EXPECT_FALSE(kumi::envInt("KUMI_TEST_VAR").has_value());
  set("KUMI_TEST_VAR", "-42");
  EXPECT_EQ(kumi::envInt("KUMI_TEST_VAR"), -42);
  EXPECT_EQ(kumi::envString("KUMI_TEST_VAR"), "-42");
  set("KUMI_TEST_VAR", "0.25");
  EXPECT_EQ(kumi::envDouble("KUMI_TEST_VAR"), 0.25);
  set("KUMI_TEST_VAR", "4M");
  EXPECT_EQ(kumi::envBytes("KUMI_TEST_VAR"), 4u << 20);
  set("KUMI_TEST_VAR", "4Q");
  std::string msg = errorOf([] { kumi::envBytes("KUMI_TEST_VAR"); });
  EXPECT_NE(msg.find("KUMI_TEST_VAR"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4Q"), std::string::npos) << msg;
}

TEST(ParseBytes, AcceptsSuffixes) {
  EXPECT_EQ(kumi::parseBytes("4M"), 4ull << 20);
  EXPECT_EQ(kumi::parseBytes("512K"), 512ull << 10);
  EXPECT_EQ(kumi::parseBytes("1G"), 1ull << 30);
  EXPECT_EQ(kumi::parseBytes("2T"), 2ull << 40);
  EXPECT_EQ(kumi::parseBytes("12"), 12u);
  EXPECT_EQ(kumi::parseBytes("0"), 0u);
  EXPECT_EQ(kumi::parseBytes("4m"), 4ull << 20);
  EXPECT_EQ(kumi::parseBytes("4k"), 4ull << 10);
  EXPECT_EQ(kumi::parseBytes("4MB"), 4ull << 20);
  EXPECT_EQ(kumi::parseBytes("16777215T"), 16777215ull << 40);
}

TEST(ParseBytes, RejectsMalformed) {
  for (const char* bad : {"", "x", "-1", "4Q", "M", "4MM", "4MBx", "1.5M", "4 M", "-4M", "17179869184G",
                          "99999999999999999999"}) {
    EXPECT_FALSE(kumi::parseBytes(bad).has_value()) << "'" << bad << "' parsed as " << kumi::parseBytes(bad).value_or(0);
  }
}

// A negative number must not wrap to a huge size just because of leading blanks
// (strtoull accepts " -1" and returns 2^64-1).
TEST(ParseBytes, RejectsNegativeAfterLeadingWhitespace) {
  for (const char* bad : {" -1", "\t-4M", " -0"}) {
    auto v = kumi::parseBytes(bad);
    EXPECT_TRUE(!v.has_value() || *v == 0) << "'" << bad << "' parsed as " << *v;
  }
}

TEST_F(ConfigEnv, BytesVariablesNameTheVariable) {
  set("KUMI_SOCKET_BUFFER", "4Q");
  std::string msg = errorOf([] { kumi::Config::resolve(nullptr); });
  EXPECT_NE(msg.find("KUMI_SOCKET_BUFFER"), std::string::npos) << msg;
  ::unsetenv("KUMI_SOCKET_BUFFER");
  set("KUMI_CHUNK_SIZE", "-1");
  msg = errorOf([] { kumi::Config::resolve(nullptr); });
  EXPECT_NE(msg.find("KUMI_CHUNK_SIZE"), std::string::npos) << msg;
  set("KUMI_CHUNK_SIZE", "256K");
  set("KUMI_SOCKET_BUFFER", "8M");
  auto c = kumi::Config::resolve(nullptr);
  EXPECT_EQ(c.chunkBytes, 256u << 10);
  EXPECT_EQ(c.socketBufferBytes, 8u << 20);
}

TEST_F(ConfigEnv, DefaultsWithoutEnvironment) {
  auto c = kumi::Config::resolve(nullptr);
  EXPECT_EQ(c.rank, -1);
  EXPECT_EQ(c.worldSize, -1);
  EXPECT_TRUE(c.store.empty());
  EXPECT_EQ(c.storeServe, -1);
  EXPECT_EQ(c.jobId, "kumi");
  EXPECT_EQ(c.generation, 0);
  EXPECT_DOUBLE_EQ(c.timeoutSeconds, 600.0);
  EXPECT_EQ(c.socketsPerPeer, 0);
  EXPECT_EQ(c.socketBufferBytes, 4u << 20);
  EXPECT_EQ(c.chunkBytes, 0u);
  kumiConfig_t init = KUMI_CONFIG_INITIALIZER;
  auto d = kumi::Config::resolve(&init);  // an untouched initializer changes nothing
  EXPECT_EQ(d.rank, -1);
  EXPECT_EQ(d.worldSize, -1);
  EXPECT_EQ(d.storeServe, -1);
  EXPECT_EQ(d.generation, 0);
  EXPECT_DOUBLE_EQ(d.timeoutSeconds, 600.0);
  EXPECT_EQ(d.jobId, "kumi");
}

TEST_F(ConfigEnv, EnvironmentIsRead) {
  set("KUMI_RANK", "3");
  set("KUMI_WORLD_SIZE", "8");
  set("KUMI_STORE", "10.0.0.1:29500");
  set("KUMI_STORE_SERVE", "0");
  set("KUMI_JOB_ID", "envjob");
  set("KUMI_GENERATION", "4");
  set("KUMI_TIMEOUT", "5");
  set("KUMI_SOCKET_IFNAME", "eth");
  set("KUMI_SOCKET_NSOCKS", "4");
  set("KUMI_ALGO", "ring");
  set("KUMI_TRANSPORT", "tcp");
  set("KUMI_HOSTID", "nodeA");
  auto c = kumi::Config::resolve(nullptr);
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.worldSize, 8);
  EXPECT_EQ(c.store, "10.0.0.1:29500");
  EXPECT_EQ(c.storeServe, 0);
  EXPECT_EQ(c.jobId, "envjob");
  EXPECT_EQ(c.generation, 4);
  EXPECT_DOUBLE_EQ(c.timeoutSeconds, 5.0);
  EXPECT_EQ(c.socketIfname, "eth");
  EXPECT_EQ(c.socketsPerPeer, 4);
  EXPECT_EQ(c.algo, "ring");
  EXPECT_EQ(c.transport, "tcp");
  EXPECT_EQ(c.hostId, "nodeA");
  EXPECT_NO_THROW(c.validate());
}

TEST_F(ConfigEnv, ConfigStructOverridesEnvironment) {
  set("KUMI_RANK", "3");
  set("KUMI_WORLD_SIZE", "8");
  set("KUMI_STORE", "10.0.0.1:29500");
  set("KUMI_STORE_SERVE", "0");
  set("KUMI_JOB_ID", "envjob");
  set("KUMI_GENERATION", "4");
  set("KUMI_TIMEOUT", "5");
  set("KUMI_SOCKET_IFNAME", "eth");
  kumiConfig_t u = KUMI_CONFIG_INITIALIZER;
  u.rank = 1;
  u.worldSize = 4;
  u.storeAddr = "127.0.0.1:1234";
  u.storeServe = 1;
  u.jobId = "userjob";
  u.generation = 2;
  u.timeoutSeconds = 7.5;
  u.socketIfname = "lo";
  auto c = kumi::Config::resolve(&u);
  EXPECT_EQ(c.rank, 1);
  EXPECT_EQ(c.worldSize, 4);
  EXPECT_EQ(c.store, "127.0.0.1:1234");
  EXPECT_EQ(c.storeServe, 1);
  EXPECT_EQ(c.jobId, "userjob");
  EXPECT_EQ(c.generation, 2);
  EXPECT_DOUBLE_EQ(c.timeoutSeconds, 7.5);
  EXPECT_EQ(c.socketIfname, "lo");

  // Fields left at the initializer's values fall back to the environment.
  kumiConfig_t partial = KUMI_CONFIG_INITIALIZER;
  partial.rank = 0;  // 0 is a real value, not "unset"
  auto p = kumi::Config::resolve(&partial);
  EXPECT_EQ(p.rank, 0);
  EXPECT_EQ(p.worldSize, 8);
  EXPECT_EQ(p.store, "10.0.0.1:29500");
  EXPECT_EQ(p.storeServe, 0);
  EXPECT_EQ(p.jobId, "envjob");
  EXPECT_EQ(p.generation, 4);
  EXPECT_DOUBLE_EQ(p.timeoutSeconds, 5.0);
  EXPECT_EQ(p.socketIfname, "eth");
}

TEST_F(ConfigEnv, StructSizeMismatchMentionsTheInitializer) {
  kumiConfig_t u = KUMI_CONFIG_INITIALIZER;
  u.structSize = sizeof(kumiConfig_t) - 8;
  std::string msg = errorOf([&] { kumi::Config::resolve(&u); });
  EXPECT_NE(msg.find("KUMI_CONFIG_INITIALIZER"), std::string::npos) << msg;
  EXPECT_NE(msg.find("structSize"), std::string::npos) << msg;
  u.structSize = 0;  // zero-initialised struct, the classic mistake
  msg = errorOf([&] { kumi::Config::resolve(&u); });
  EXPECT_NE(msg.find("KUMI_CONFIG_INITIALIZER"), std::string::npos) << msg;
}

kumi::Config goodConfig() {
  kumi::Config c;
  c.rank = 0;
  c.worldSize = 2;
  c.store = "127.0.0.1:29500";
  return c;
}

TEST_F(ConfigEnv, ValidateAcceptsAGoodConfig) {
  EXPECT_NO_THROW(goodConfig().validate());
  kumi::Config single;
  single.rank = 0;
  single.worldSize = 1;  // a single rank needs no store
  EXPECT_NO_THROW(single.validate());
}

TEST_F(ConfigEnv, ValidateRejectsRankOutsideTheWorld) {
  auto c = goodConfig();
  c.worldSize = 4;
  c.rank = 5;
  std::string msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("rank 5 is outside"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4"), std::string::npos) << msg;
  c.rank = 4;
  msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("rank 4 is outside"), std::string::npos) << msg;
  c.rank = -1;
  msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("rank -1 is outside"), std::string::npos) << msg;
}

TEST_F(ConfigEnv, ValidateRejectsWorldSizeZero) {
  auto c = goodConfig();
  c.worldSize = 0;
  std::string msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("world size is 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KUMI_WORLD_SIZE"), std::string::npos) << msg;
}

TEST_F(ConfigEnv, ValidateRequiresAStoreForMoreThanOneRank) {
  auto c = goodConfig();
  c.store.clear();
  std::string msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("KUMI_STORE"), std::string::npos) << msg;
}

TEST_F(ConfigEnv, ValidateRejectsBadSocketCount) {
  for (const char* bad : {"17", "-1", "1000"}) {
    set("KUMI_SOCKET_NSOCKS", bad);
    // Refused either while reading the environment or when validating: both name it.
    std::string msg = errorOf([&] {
      auto c = kumi::Config::resolve(nullptr);
      c.rank = 0;
      c.worldSize = 2;
      c.store = "h:1";
      c.validate();
    });
    EXPECT_NE(msg.find("KUMI_SOCKET_NSOCKS"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
  }
  set("KUMI_SOCKET_NSOCKS", "four");
  std::string msg = errorOf([] { kumi::Config::resolve(nullptr); });
  EXPECT_NE(msg.find("KUMI_SOCKET_NSOCKS"), std::string::npos) << msg;
  set("KUMI_SOCKET_NSOCKS", "16");
  auto c = kumi::Config::resolve(nullptr);
  c.rank = 0;
  c.worldSize = 1;
  EXPECT_NO_THROW(c.validate());
}

TEST_F(ConfigEnv, ValidateRejectsUnknownTransport) {
  set("KUMI_TRANSPORT", "rdma");
  auto c = kumi::Config::resolve(nullptr);
  c.rank = 0;
  c.worldSize = 1;
  std::string msg = errorOf([&] { c.validate(); });
  EXPECT_NE(msg.find("KUMI_TRANSPORT"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'rdma'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tcp"), std::string::npos) << "should list what is available: " << msg;
  EXPECT_NE(msg.find("ib"), std::string::npos) << "should list what is available: " << msg;
}

TEST_F(ConfigEnv, ValidateRejectsOtherOutOfRangeSettings) {
  struct Case {
    const char* var;
    const char* value;
  } cases[] = {{"KUMI_TIMEOUT", "0"}, {"KUMI_TIMEOUT", "-3"}, {"KUMI_GENERATION", "-2"},
               {"KUMI_STORE_SERVE", "2"}, {"KUMI_CHUNK_SIZE", "1K"}, {"KUMI_CHUNK_SIZE", "128M"}};
  for (const auto& k : cases) {
    for (const char* v : kVars) ::unsetenv(v);
    set(k.var, k.value);
    std::string msg = errorOf([&] {
      auto c = kumi::Config::resolve(nullptr);
      c.rank = 0;
      c.worldSize = 1;
      c.validate();
    });
    EXPECT_NE(msg.find(k.var), std::string::npos) << k.var << "=" << k.value << ": " << msg;
  }
}

}  // namespace
