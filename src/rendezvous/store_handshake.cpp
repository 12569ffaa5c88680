#include "rendezvous/store_handshake.hpp"

#include <cstring>

namespace kumi::store_protocol {

namespace {
auth::Nonce nonceOf(const std::uint8_t (&bytes)[auth::kNonceBytes]) {
  auth::Nonce n;
  std::memcpy(n.data(), bytes, n.size());
  return n;
}
auth::Mac macOf(const std::uint8_t (&bytes)[auth::kMacBytes]) {
  auth::Mac m;
  std::memcpy(m.data(), bytes, m.size());
  return m;
}
}  // namespace

Greeting makeGreeting(bool authRequired, const auth::Nonce& serverNonce) {
  Greeting g{};
  g.magic = kGreetingMagic;
  g.version = kWireVersion;
  g.flags = authRequired ? kFlagAuth : 0;
  if (authRequired) std::memcpy(g.nonce, serverNonce.data(), sizeof g.nonce);
  return g;
}

GreetingCheck checkGreeting(const Greeting& g, bool haveSecret) {
  if (g.magic != kGreetingMagic) return GreetingCheck::kNotKumi;
  if (g.version != kWireVersion) return GreetingCheck::kBadVersion;
  const bool wants = (g.flags & kFlagAuth) != 0;
  if (wants && !haveSecret) return GreetingCheck::kServerWantsSecret;
  if (!wants && haveSecret) return GreetingCheck::kServerHasNoSecret;
  return GreetingCheck::kOk;
}

std::string describe(GreetingCheck c) {
  switch (c) {
    case GreetingCheck::kOk: return "ok";
    case GreetingCheck::kNotKumi:
      return "did not greet as a kumi store (another service on that port, or a kumi older than this one)";
    case GreetingCheck::kBadVersion: return "speaks another version of the kumi store protocol (mixed kumi versions?)";
    case GreetingCheck::kServerWantsSecret:
      return "requires authentication, and this process has no secret: set KUMI_SECRET or KUMI_SECRET_FILE as the "
             "store's";
    case GreetingCheck::kServerHasNoSecret:
      return "does not authenticate its clients, but KUMI_SECRET (or KUMI_SECRET_FILE) is set here: start the store "
             "with the same secret, or unset it here";
  }
  return "unknown greeting";
}

ClientHello makeClientHello(std::string_view secret, const auth::Nonce& serverNonce, const auth::Nonce& clientNonce) {
  ClientHello h{};
  h.magic = kHelloMagic;
  h.version = kWireVersion;
  if (!secret.empty()) {
    h.flags = kFlagAuth;
    std::memcpy(h.nonce, clientNonce.data(), sizeof h.nonce);
    const auth::Mac p = auth::proof(secret, auth::kStoreClientLabel, serverNonce, clientNonce);
    std::memcpy(h.proof, p.data(), sizeof h.proof);
  }
  return h;
}

HelloCheck checkClientHello(const char* data, std::size_t size, std::string_view secret,
                            const auth::Nonce& serverNonce, ClientHello* out) {
  std::uint32_t magic = 0;
  if (size >= sizeof magic) {
    std::memcpy(&magic, data, sizeof magic);
    if (magic != kHelloMagic) return HelloCheck::kNotKumi;
  }
  if (size < sizeof(ClientHello)) return HelloCheck::kNeedMore;
  ClientHello h;
  std::memcpy(&h, data, sizeof h);
  if (out) *out = h;
  if (h.version != kWireVersion) return HelloCheck::kBadVersion;
  if (secret.empty()) return HelloCheck::kOk;  // the client saw from the greeting that none is needed
  if (!(h.flags & kFlagAuth)) return HelloCheck::kNoSecret;
  const auth::Mac expected = auth::proof(secret, auth::kStoreClientLabel, serverNonce, nonceOf(h.nonce));
  return auth::equal(expected, macOf(h.proof)) ? HelloCheck::kOk : HelloCheck::kWrongSecret;
}

Verdict makeVerdict(bool accepted, std::string_view secret, const auth::Nonce& serverNonce,
                    const auth::Nonce& clientNonce) {
  Verdict v{};
  v.accepted = accepted ? 1 : 0;
  if (accepted) {
    const auth::Mac p = auth::proof(secret, auth::kStoreServerLabel, serverNonce, clientNonce);
    std::memcpy(v.proof, p.data(), sizeof v.proof);
  }
  return v;
}

bool verdictProvesServer(const Verdict& v, std::string_view secret, const auth::Nonce& serverNonce,
                         const auth::Nonce& clientNonce) {
  if (v.accepted != 1) return false;
  return auth::equal(auth::proof(secret, auth::kStoreServerLabel, serverNonce, clientNonce), macOf(v.proof));
}

}  // namespace kumi::store_protocol
