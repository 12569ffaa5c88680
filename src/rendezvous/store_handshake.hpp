// The first bytes of every TCP store connection, before any request. The server speaks first,
// at once: a greeting that says whether it requires the shared secret, with its nonce. The client
// answers with a hello; with a secret, the hello carries the client's nonce and proof and the
// server answers with a verdict that carries its own proof (mutual challenge-response, see
// core/auth.hpp). Without a secret the client sends its hello and its first request back to
// back, so an unauthenticated connection costs one round trip, as the protocol always did.
// Because the greeting says what the server expects, a client with a secret meeting a server
// without one (or the reverse) fails at once with a clear message instead of hanging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/auth.hpp"

namespace kumi::store_protocol {

constexpr std::uint32_t kGreetingMagic = 0x4b535452;  // "KSTR"
constexpr std::uint32_t kHelloMagic = 0x4b53434c;     // "KSCL"
constexpr std::uint8_t kWireVersion = 1;
constexpr std::uint8_t kFlagAuth = 1;  // greeting: the server requires the secret; hello: the client has one

#pragma pack(push, 1)
struct Greeting {  // server -> client, on accept
  std::uint32_t magic;
  std::uint8_t version;
  std::uint8_t flags;
  std::uint16_t reserved;
  std::uint8_t nonce[auth::kNonceBytes];  // zero without a secret
};
struct ClientHello {  // client -> server, after the greeting
  std::uint32_t magic;
  std::uint8_t version;
  std::uint8_t flags;
  std::uint16_t reserved;
  std::uint8_t nonce[auth::kNonceBytes];  // zero without a secret
  std::uint8_t proof[auth::kMacBytes];    // HMAC(secret, client label | server nonce | client nonce)
};
struct Verdict {  // server -> client, only when the server requires the secret
  std::uint8_t accepted;                  // 1, or 0 when the client's proof was wrong
  std::uint8_t proof[auth::kMacBytes];    // HMAC(secret, server label | server nonce | client nonce)
};
#pragma pack(pop)

Greeting makeGreeting(bool authRequired, const auth::Nonce& serverNonce);

// The client's reading of a greeting, given whether it has a secret itself.
enum class GreetingCheck { kOk, kNotKumi, kBadVersion, kServerWantsSecret, kServerHasNoSecret };
GreetingCheck checkGreeting(const Greeting& g, bool haveSecret);
// Says what went wrong and what to do, for "store at HOST:PORT ..." messages.
std::string describe(GreetingCheck c);

// The client's hello; without a secret, nonce and proof stay zero.
ClientHello makeClientHello(std::string_view secret, const auth::Nonce& serverNonce, const auth::Nonce& clientNonce);

// The server's reading of the bytes a client sent first. kNeedMore until a whole hello is there
// (garbage is recognised by its first four bytes, so a stranger is dropped without waiting).
enum class HelloCheck { kNeedMore, kNotKumi, kBadVersion, kNoSecret, kWrongSecret, kOk };
HelloCheck checkClientHello(const char* data, std::size_t size, std::string_view secret,
                            const auth::Nonce& serverNonce, ClientHello* out);

Verdict makeVerdict(bool accepted, std::string_view secret, const auth::Nonce& serverNonce,
                    const auth::Nonce& clientNonce);
// True when the server accepted and proved it knows the secret.
bool verdictProvesServer(const Verdict& v, std::string_view secret, const auth::Nonce& serverNonce,
                         const auth::Nonce& clientNonce);

}  // namespace kumi::store_protocol
