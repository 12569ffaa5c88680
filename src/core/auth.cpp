#include "core/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>

#include "core/error.hpp"

namespace kumi::auth {

Mac hmacSha256(std::string_view key, std::string_view data) {
  Mac out{};
  unsigned int len = 0;
  // An empty key is legal HMAC (RFC 2104 pads it with zeros); OpenSSL wants a non-null pointer.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (key.size() > INT_MAX ||
      HMAC(EVP_sha256(), k, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &len) == nullptr ||
      len != kMacBytes)
    fail(kumiInternalError, "HMAC-SHA256 failed in libcrypto");
  return out;
}

bool equal(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), kMacBytes) == 0; }

void randomBytes(void* out, std::size_t n) {
  if (n > INT_MAX || RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(n)) != 1)
    fail(kumiSystemError, "no random bytes from libcrypto (RAND_bytes) for an authentication nonce");
}

Nonce randomNonce() {
  Nonce n;
  randomBytes(n.data(), n.size());
  return n;
}

std::string randomHex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  randomBytes(raw.data(), raw.size());
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes);
  for (unsigned char c : raw) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  return hex;
}

Mac proof(std::string_view secret, std::string_view label, const Nonce& serverNonce, const Nonce& clientNonce,
          std::string_view context) {
  std::string msg;
  msg.reserve(label.size() + 1 + 2 * kNonceBytes + context.size());
  // The label ends with a zero byte so that no label is a prefix of another's message.
  msg.append(label);
  msg.push_back('\0');
  msg.append(reinterpret_cast<const char*>(serverNonce.data()), serverNonce.size());
  msg.append(reinterpret_cast<const char*>(clientNonce.data()), clientNonce.size());
  msg.append(context);
  return hmacSha256(secret, msg);
}

}  // namespace kumi::auth
