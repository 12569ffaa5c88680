// The shared-secret machinery: HMAC-SHA256 against RFC 4231's known answers, the proof's
// binding to direction, nonces and context, and reading KUMI_SECRET / KUMI_SECRET_FILE.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../common/test_util.hpp"
#include "core/auth.hpp"
#include "core/config.hpp"
#include "core/secret.hpp"

namespace {

using kumi::test::errorOf;
namespace auth = kumi::auth;

std::string hex(const auth::Mac& m, std::size_t bytes = auth::kMacBytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < bytes; ++i) {
    s += kDigits[m[i] >> 4];
    s += kDigits[m[i] & 15];
  }
  return s;
}

struct Rfc4231Case {
  const char* name;
  std::string key;
  std::string data;
  const char* hmacSha256;  // truncated to 128 bits in case 5, as the RFC gives it
};

TEST(Hmac, Rfc4231KnownAnswers) {
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4 += static_cast<char>(i);
  const Rfc4231Case cases[] = {
      {"4.2", std::string(20, '\x0b'), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"4.3", "Jefe", "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"4.4", std::string(20, '\xaa'), std::string(50, '\xdd'),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"4.5", key4, std::string(50, '\xcd'), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"4.6", std::string(20, '\x0c'), "Test With Truncation", "a3b6167473100ee06e0c796c2955552b"},
      {"4.7", std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"4.8", std::string(131, '\xaa'),
       "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
       "hashed before being used by the HMAC algorithm.",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (const auto& c : cases) {
    const std::string want = c.hmacSha256;
    EXPECT_EQ(hex(auth::hmacSha256(c.key, c.data), want.size() / 2), want) << "RFC 4231 section " << c.name;
  }
}

TEST(Hmac, EqualIsExact) {
  const auth::Mac a = auth::hmacSha256("k", "m");
  auth::Mac b = a;
  EXPECT_TRUE(auth::equal(a, b));
  for (std::size_t i : {std::size_t{0}, std::size_t{17}, auth::kMacBytes - 1}) {
    b = a;
    b[i] ^= 1;
    EXPECT_FALSE(auth::equal(a, b)) << "a one-bit difference at byte " << i << " went unnoticed";
  }
}

TEST(Hmac, NoncesAreFreshAndSecretsAreHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 64; ++i) {
    const auth::Nonce n = auth::randomNonce();
    seen.insert(std::string(n.begin(), n.end()));
  }
  EXPECT_EQ(seen.size(), 64u) << "random nonces repeated";
  const std::string s = auth::randomHex(32);
  EXPECT_EQ(s.size(), 64u);
  EXPECT_EQ(s.find_first_not_of("0123456789abcdef"), std::string::npos) << s;
  EXPECT_NE(s, auth::randomHex(32));
}

TEST(Hmac, ProofDependsOnEverythingItBinds) {
  const auth::Nonce server = auth::randomNonce(), client = auth::randomNonce();
  const auth::Mac p = auth::proof("secret", auth::kStoreClientLabel, server, client, "ctx");
  EXPECT_TRUE(auth::equal(p, auth::proof("secret", auth::kStoreClientLabel, server, client, "ctx")));
  // A proof is worth nothing under another secret, in the other direction (no reflection),
  // with the nonces swapped or replaced (no replay), or for another context.
  EXPECT_FALSE(auth::equal(p, auth::proof("secreT", auth::kStoreClientLabel, server, client, "ctx")));
  EXPECT_FALSE(auth::equal(p, auth::proof("secret", auth::kStoreServerLabel, server, client, "ctx")));
  EXPECT_FALSE(auth::equal(p, auth::proof("secret", auth::kTcpInitiatorLabel, server, client, "ctx")));
  EXPECT_FALSE(auth::equal(p, auth::proof("secret", auth::kStoreClientLabel, client, server, "ctx")));
  EXPECT_FALSE(auth::equal(p, auth::proof("secret", auth::kStoreClientLabel, auth::randomNonce(), client, "ctx")));
  EXPECT_FALSE(auth::equal(p, auth::proof("secret", auth::kStoreClientLabel, server, client, "ctX")));
}

// Sets (or unsets, with nullptr) the secret variables for one test and restores them after.
class SecretEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"KUMI_SECRET", "KUMI_SECRET_FILE"}) {
      const char* old = std::getenv(v);
      saved_.emplace_back(v, old ? std::optional<std::string>(old) : std::nullopt);
      ::unsetenv(v);
    }
    char tmpl[] = "/tmp/kumi-secret-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    file_ = tmpl;
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) ::setenv(name, value->c_str(), 1);
      else ::unsetenv(name);
    }
    ::unlink(file_.c_str());
  }
  void write(const std::string& content) { std::ofstream(file_, std::ios::binary) << content; }
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
  std::string file_;
};

TEST_F(SecretEnv, NoneIsEmpty) { EXPECT_EQ(kumi::secretFromEnv(), ""); }

TEST_F(SecretEnv, DirectValue) {
  ::setenv("KUMI_SECRET", "s3cr3t value", 1);
  EXPECT_EQ(kumi::secretFromEnv(), "s3cr3t value");
  EXPECT_EQ(kumi::Config::resolve(nullptr).secret, "s3cr3t value") << "Config reads it the same way";
}

TEST_F(SecretEnv, FileWithTrailingNewlinesStripped) {
  write("from-a-kubernetes-secret\r\n\n");
  ::setenv("KUMI_SECRET_FILE", file_.c_str(), 1);
  EXPECT_EQ(kumi::secretFromEnv(), "from-a-kubernetes-secret");
  write("inner\nnewline kept\n");
  EXPECT_EQ(kumi::secretFromEnv(), "inner\nnewline kept") << "only trailing newlines go";
}

TEST_F(SecretEnv, BothSetIsAnError) {
  write("x");
  ::setenv("KUMI_SECRET", "y", 1);
  ::setenv("KUMI_SECRET_FILE", file_.c_str(), 1);
  const std::string msg = errorOf([] { kumi::secretFromEnv(); });
  EXPECT_NE(msg.find("both set"), std::string::npos) << msg;
}

TEST_F(SecretEnv, EmptyOrUnreadableFileNamesThePathNeverTheContent) {
  write("\n");
  ::setenv("KUMI_SECRET_FILE", file_.c_str(), 1);
  std::string msg = errorOf([] { kumi::secretFromEnv(); });
  EXPECT_NE(msg.find(file_), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;

  const std::string missing = file_ + "-does-not-exist";
  ::setenv("KUMI_SECRET_FILE", missing.c_str(), 1);
  msg = errorOf([] { kumi::secretFromEnv(); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("KUMI_SECRET_FILE"), std::string::npos) << msg;

  write("do-not-print-me\n");
  ::setenv("KUMI_SECRET_FILE", file_.c_str(), 1);
  ::setenv("KUMI_SECRET", "also-secret", 1);
  msg = errorOf([] { kumi::secretFromEnv(); });
  EXPECT_EQ(msg.find("do-not-print-me"), std::string::npos) << "an error leaked the secret: " << msg;
  EXPECT_EQ(msg.find("also-secret"), std::string::npos) << "an error leaked the secret: " << msg;
}

}  // namespace
