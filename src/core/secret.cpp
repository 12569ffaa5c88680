#include "core/secret.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/env.hpp"
#include "core/error.hpp"

namespace kumi {

namespace {
// A secret is a password, not a document: anything larger is the wrong file.
constexpr std::size_t kMaxSecretBytes = 64 << 10;
}  // namespace

std::string readSecretFile(const std::string& path, const char* variable) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open())
    fail(kumiInvalidArgument, variable, "='", path, "': cannot read the secret file (", std::strerror(errno), ")");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(kumiInvalidArgument, variable, "='", path, "': error while reading the secret file");
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) fail(kumiInvalidArgument, variable, "='", path, "': the secret file is empty");
  if (s.size() > kMaxSecretBytes)
    fail(kumiInvalidArgument, variable, "='", path, "': the secret file holds ", s.size(), " bytes, more than the ",
         kMaxSecretBytes, " a secret may have (the wrong file?)");
  return s;
}

std::string secretFromEnv() {
  auto direct = envString("KUMI_SECRET");
  auto file = envString("KUMI_SECRET_FILE");
  if (direct && file)
    fail(kumiInvalidArgument, "KUMI_SECRET and KUMI_SECRET_FILE are both set: give the secret one way only");
  if (file) return readSecretFile(*file, "KUMI_SECRET_FILE");
  if (direct && direct->size() > kMaxSecretBytes)
    fail(kumiInvalidArgument, "KUMI_SECRET holds ", direct->size(), " bytes, more than the ", kMaxSecretBytes,
         " a secret may have");
  return direct.value_or(std::string());
}

}  // namespace kumi
