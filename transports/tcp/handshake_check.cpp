#include "transports/tcp/handshake_check.hpp"

#include <cstring>

namespace kumi::tcp {

namespace {
template <std::size_t N>
std::array<std::uint8_t, N> arrayOf(const std::uint8_t (&bytes)[N]) {
  std::array<std::uint8_t, N> a;
  std::memcpy(a.data(), bytes, N);
  return a;
}
std::string_view bytesOf(const void* p, std::size_t n) { return {static_cast<const char*>(p), n}; }
}  // namespace

Greeting makeGreeting(bool authRequired, const auth::Nonce& acceptorNonce) {
  Greeting g{};
  g.magic = kGreetingMagic;
  g.version = kProtocolVersion;
  g.flags = authRequired ? kGreetingAuth : 0;
  if (authRequired) std::memcpy(g.nonce, acceptorNonce.data(), sizeof g.nonce);
  return g;
}

GreetingCheck checkGreeting(const Greeting& g, bool haveSecret) {
  if (g.magic != kGreetingMagic) return GreetingCheck::kNotKumi;
  if (g.version != kProtocolVersion) return GreetingCheck::kBadVersion;
  const bool wants = (g.flags & kGreetingAuth) != 0;
  if (wants && !haveSecret) return GreetingCheck::kPeerWantsSecret;
  if (!wants && haveSecret) return GreetingCheck::kPeerHasNoSecret;
  return GreetingCheck::kOk;
}

std::string describe(GreetingCheck c) {
  switch (c) {
    case GreetingCheck::kOk: return "ok";
    case GreetingCheck::kNotKumi: return "did not greet as a kumi rank (another program on that port?)";
    case GreetingCheck::kBadVersion: return "speaks another kumi protocol version (mixed kumi versions in one job?)";
    case GreetingCheck::kPeerWantsSecret:
      return "requires authentication (KUMI_SECRET), and this rank has no secret: give every rank the same "
             "KUMI_SECRET or KUMI_SECRET_FILE";
    case GreetingCheck::kPeerHasNoSecret:
      return "does not authenticate, but this rank has KUMI_SECRET set: give every rank the same secret";
  }
  return "unknown greeting";
}

std::uint32_t checkHello(const Hello& h, const HelloExpect& e) {
  if (h.magic != kHelloMagic || h.version != kProtocolVersion) return kBadVersion;
  if (h.jobHash != e.jobHash) return kWrongJob;
  if (h.generation != e.generation) return kWrongGeneration;
  if (h.commHash != e.commHash) return kWrongCommunicator;
  if (h.worldSize != e.worldSize || h.rank >= h.worldSize || h.rank == e.rank || h.socketCount == 0 ||
      h.socketCount > e.maxSockets || h.socketIndex >= h.socketCount)
    return kBadRank;
  return kAccepted;
}

HelloProof makeHelloProof(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                          const Hello& h) {
  HelloProof p{};
  if (secret.empty()) return p;
  std::memcpy(p.nonce, initiatorNonce.data(), sizeof p.nonce);
  const auth::Mac m = auth::proof(secret, auth::kTcpInitiatorLabel, acceptorNonce, initiatorNonce, bytesOf(&h, sizeof h));
  std::memcpy(p.mac, m.data(), sizeof p.mac);
  return p;
}

bool helloProofValid(std::string_view secret, const auth::Nonce& acceptorNonce, const HelloProof& p, const Hello& h) {
  const auth::Mac m = auth::proof(secret, auth::kTcpInitiatorLabel, acceptorNonce, arrayOf(p.nonce), bytesOf(&h, sizeof h));
  return auth::equal(m, arrayOf(p.mac));
}

namespace {
auth::Mac replyMac(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                   const Hello& h, const HelloReply& r) {
  std::string context(bytesOf(&h, sizeof h));
  context.append(bytesOf(&r, sizeof r));
  return auth::proof(secret, auth::kTcpAcceptorLabel, acceptorNonce, initiatorNonce, context);
}
}  // namespace

ReplyProof makeReplyProof(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                          const Hello& h, const HelloReply& r) {
  ReplyProof p{};
  if (secret.empty()) return p;
  const auth::Mac m = replyMac(secret, acceptorNonce, initiatorNonce, h, r);
  std::memcpy(p.mac, m.data(), sizeof p.mac);
  return p;
}

bool replyProofValid(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                     const Hello& h, const HelloReply& r, const ReplyProof& p) {
  return auth::equal(replyMac(secret, acceptorNonce, initiatorNonce, h, r), arrayOf(p.mac));
}

InitiatorBytes scanInitiator(const char* data, std::size_t size, Hello* hello, HelloProof* proof) {
  if (size >= sizeof(std::uint32_t)) {
    std::uint32_t magic;
    std::memcpy(&magic, data, sizeof magic);
    if (magic != kHelloMagic) return InitiatorBytes::kNotKumi;
  }
  if (size < kInitiatorBytes) return InitiatorBytes::kNeedMore;
  std::memcpy(hello, data, sizeof(Hello));
  std::memcpy(proof, data + sizeof(Hello), sizeof(HelloProof));
  return InitiatorBytes::kComplete;
}

std::string printableJobId(const Hello& h) {
  std::string s(h.jobId, strnlen(h.jobId, sizeof h.jobId));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return s;
}

}  // namespace kumi::tcp
