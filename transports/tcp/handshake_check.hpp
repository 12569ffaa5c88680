// What the two ends of a new TCP connection between ranks accept from each other, as pure
// functions over the bytes (tests/fuzz/ drives them). The exchange, for protocol version 3:
//
//   acceptor  -> initiator  Greeting            says whether the acceptor requires the secret, and
//                                               its nonce; sent at once on accept
//   initiator -> acceptor   Hello + HelloProof  who is calling (handshake.hpp), its nonce, and
//                                               HMAC(secret, initiator label | nonces | Hello)
//   acceptor  -> initiator  HelloReply + ReplyProof   the verdict, and HMAC(secret, acceptor
//                                               label | nonces | Hello | HelloReply)
//
// Without a secret the nonces and proofs are zero and ignored: the sizes never change, so the
// acceptor reads a fixed number of bytes, and a pair that disagrees on having a secret learns it
// from the greeting instead of hanging. Sockets are not touched here (connection_handshake.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/auth.hpp"
#include "transports/tcp/handshake.hpp"

namespace kumi::tcp {

constexpr std::uint32_t kGreetingMagic = 0x4b554d47;  // "KUMG": never a HelloReply, so older kumi says "garbage"
constexpr std::uint16_t kGreetingAuth = 1;             // Greeting::flags: the acceptor requires the secret

#pragma pack(push, 1)
struct Greeting {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t flags;
  std::uint8_t nonce[auth::kNonceBytes];
};
struct HelloProof {
  std::uint8_t nonce[auth::kNonceBytes];
  std::uint8_t mac[auth::kMacBytes];
};
struct ReplyProof {
  std::uint8_t mac[auth::kMacBytes];
};
#pragma pack(pop)

// The bytes an initiator sends, and those the acceptor answers with.
constexpr std::size_t kInitiatorBytes = sizeof(Hello) + sizeof(HelloProof);
constexpr std::size_t kAcceptorReplyBytes = sizeof(HelloReply) + sizeof(ReplyProof);

Greeting makeGreeting(bool authRequired, const auth::Nonce& acceptorNonce);

// The initiator's reading of the greeting, given whether it has a secret itself.
enum class GreetingCheck { kOk, kNotKumi, kBadVersion, kPeerWantsSecret, kPeerHasNoSecret };
GreetingCheck checkGreeting(const Greeting& g, bool haveSecret);
std::string describe(GreetingCheck c);  // for "rank 3 (host:port) ..." messages

// What the acceptor knows of its own side, to judge a Hello.
struct HelloExpect {
  std::uint64_t jobHash = 0;
  std::uint64_t commHash = 0;
  std::uint32_t generation = 0;
  std::uint32_t worldSize = 0;
  std::uint32_t rank = 0;
  std::uint16_t maxSockets = 16;  // KUMI_SOCKET_NSOCKS' limit
};
// kAccepted, or why the Hello is refused (before the peer's own state is consulted).
std::uint32_t checkHello(const Hello& h, const HelloExpect& e);

HelloProof makeHelloProof(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                          const Hello& h);
bool helloProofValid(std::string_view secret, const auth::Nonce& acceptorNonce, const HelloProof& p, const Hello& h);

ReplyProof makeReplyProof(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                          const Hello& h, const HelloReply& r);
bool replyProofValid(std::string_view secret, const auth::Nonce& acceptorNonce, const auth::Nonce& initiatorNonce,
                     const Hello& h, const HelloReply& r, const ReplyProof& p);

// The acceptor's reading of the first bytes of a connection. kNeedMore until kInitiatorBytes
// are there; garbage is recognised by its first four bytes, so a stranger is dropped at once.
enum class InitiatorBytes { kNeedMore, kNotKumi, kComplete };
InitiatorBytes scanInitiator(const char* data, std::size_t size, Hello* hello, HelloProof* proof);

// A peer's job id as it may be printed: at most 64 bytes, anything unprintable replaced, so a
// stranger cannot forge log lines.
std::string printableJobId(const Hello& h);

}  // namespace kumi::tcp
