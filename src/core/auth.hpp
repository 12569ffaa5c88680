// The shared-secret challenge-response used on every store and transport connection when
// KUMI_SECRET (or KUMI_SECRET_FILE) is set. Each side sends a fresh random nonce; each proves
// that it knows the secret with HMAC-SHA256(secret, label | server nonce | client nonce | context).
// The label names the direction, so a proof can never be reflected back to the side that sent it,
// and the nonces make every proof single-use. Only libcrypto's HMAC and RAND_bytes are used, and
// only here: OpenSSL stays out of every other file and out of the public API.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kumi::auth {

constexpr std::size_t kNonceBytes = 32;
constexpr std::size_t kMacBytes = 32;
using Nonce = std::array<std::uint8_t, kNonceBytes>;
using Mac = std::array<std::uint8_t, kMacBytes>;

// HMAC-SHA256 of data under key (RFC 2104; known-answer tests from RFC 4231 in tests/core).
Mac hmacSha256(std::string_view key, std::string_view data);

// Constant-time comparison (CRYPTO_memcmp): how long it takes says nothing about where a forged
// proof first differs.
bool equal(const Mac& a, const Mac& b);

// Cryptographically random bytes (RAND_bytes); throws kumiSystemError when none can be had.
void randomBytes(void* out, std::size_t n);
Nonce randomNonce();
// 2 * bytes hexadecimal characters: a secret that survives an environment variable (kumirun).
std::string randomHex(std::size_t bytes);

// What one side sends to prove it knows the secret.
Mac proof(std::string_view secret, std::string_view label, const Nonce& serverNonce, const Nonce& clientNonce,
          std::string_view context = {});

// Direction labels: a client's proof never verifies as a server's, nor a store's as a transport's.
inline constexpr std::string_view kStoreClientLabel = "kumi store client v1";
inline constexpr std::string_view kStoreServerLabel = "kumi store server v1";
inline constexpr std::string_view kTcpInitiatorLabel = "kumi tcp initiator v1";
inline constexpr std::string_view kTcpAcceptorLabel = "kumi tcp acceptor v1";

}  // namespace kumi::auth
