// The TCP transport's connection handshake, both ends: what an acceptor makes of an initiator's
// bytes (Hello and proof: scan, validation against this rank's job, proof check), and what an
// initiator makes of the acceptor's greeting and reply (with its proof). Input: one byte selects
// the side and whether a secret is set; the rest is what the other end sent.
#include <cstring>

#include "fuzz_input.hpp"
#include "transports/tcp/handshake_check.hpp"

namespace tcp = kumi::tcp;

namespace {
tcp::HelloExpect expectation() {
  tcp::HelloExpect e;
  e.jobHash = kumi::fnv1a("fuzz-job");
  e.commHash = kumi::fnv1a("fuzz-comm");
  e.generation = 1;
  e.worldSize = 4;
  e.rank = 2;
  return e;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kumi::fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  const std::string secret = (mode & 2) ? kumi::fuzz::kSecret : "";
  const kumi::auth::Nonce acceptorNonce = kumi::fuzz::fixedNonce(0x5a);
  if ((mode & 1) == 0) {
    // Acceptor: the initiator's bytes, possibly in several pieces as the socket delivers them.
    const std::string bytes = in.rest();
    tcp::Hello h{};
    tcp::HelloProof p{};
    for (std::size_t have = 0; have <= bytes.size(); have += 1 + have / 2) {
      const auto r = tcp::scanInitiator(bytes.data(), have, &h, &p);
      if (r == tcp::InitiatorBytes::kNotKumi) return 0;
      if (r == tcp::InitiatorBytes::kComplete) break;
      if (have == bytes.size()) return 0;
    }
    if (tcp::scanInitiator(bytes.data(), bytes.size(), &h, &p) != tcp::InitiatorBytes::kComplete) return 0;
    std::uint32_t status = tcp::checkHello(h, expectation());
    if (status == tcp::kAccepted) {
      // What the transport relies on once a Hello is accepted: indexes within the world.
      if (h.rank >= 4 || h.rank == 2 || h.socketIndex >= h.socketCount || h.socketCount > 16) __builtin_trap();
    }
    if (!secret.empty() && status != tcp::kBadVersion && !tcp::helloProofValid(secret, acceptorNonce, p, h))
      status = tcp::kAuthFailed;
    (void)tcp::helloStatusText(status);
    (void)tcp::printableJobId(h);
    return 0;
  }
  // Initiator: the greeting, then the reply and its proof.
  tcp::Greeting g{};
  std::string bytes = in.take(sizeof g);
  std::memcpy(&g, bytes.data(), bytes.size());
  const tcp::GreetingCheck check = tcp::checkGreeting(g, !secret.empty());
  (void)tcp::describe(check);
  if (check != tcp::GreetingCheck::kOk) return 0;
  tcp::HelloReply reply{};
  tcp::ReplyProof proof{};
  bytes = in.take(sizeof reply);
  std::memcpy(&reply, bytes.data(), bytes.size());
  bytes = in.take(sizeof proof);
  std::memcpy(&proof, bytes.data(), bytes.size());
  tcp::Hello mine{};
  mine.magic = tcp::kHelloMagic;
  mine.version = tcp::kProtocolVersion;
  kumi::auth::Nonce theirs;
  std::memcpy(theirs.data(), g.nonce, theirs.size());
  if (!secret.empty()) (void)tcp::replyProofValid(secret, theirs, kumi::fuzz::fixedNonce(0xc1), mine, reply, proof);
  (void)tcp::helloStatusText(reply.status);
  return 0;
}
