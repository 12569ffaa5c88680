// The first bytes on every TCP connection between ranks. The acceptor checks that the caller
// belongs to the same job, restart generation and communicator, and is a valid rank; anything
// else is refused with a reason that both sides log.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/hash.hpp"

namespace kumi::tcp {

constexpr std::uint32_t kHelloMagic = 0x4b554d49;  // "KUMI"
// 2: call stamps and checksums in MessageHeader; 3: the acceptor's greeting and the shared-secret
// challenge-response around the Hello (handshake_check.hpp).
constexpr std::uint16_t kProtocolVersion = 3;

#pragma pack(push, 1)
struct Hello {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t socketIndex;
  std::uint16_t socketCount;
  std::uint16_t reserved;
  std::uint32_t rank;
  std::uint32_t worldSize;
  std::uint32_t generation;
  std::uint64_t setNonce;     // ties the sockets of one connection set together
  char jobId[64];             // truncated; compared in full through the hash
  std::uint64_t jobHash;
  std::uint64_t commHash;
};
struct HelloReply {
  std::uint32_t magic;
  std::uint32_t status;
};
// Precedes every message part on the wire.
struct MessageHeader {
  std::uint32_t magic;
  std::uint32_t sequence;  // per peer and direction; catches a desynchronised stream
  std::uint64_t bytes;
  std::uint64_t stampLo;   // the sender's CallStamp: which call this part belongs to
  std::uint64_t stampHi;
  std::uint32_t checksum;  // CRC32C of the part's bytes, when flags has kHasChecksum
  std::uint32_t flags;
};
constexpr std::uint32_t kHasChecksum = 1;
// A header with this magic instead of kHelloMagic is a failing rank's last frame: `bytes` bytes
// of its story follow (at most kMaxStoryBytes), then the connection closes.
constexpr std::uint32_t kFailureMagic = 0x4b554d58;  // "KUMX"
constexpr std::uint64_t kMaxStoryBytes = 1024;
#pragma pack(pop)

enum HelloStatus : std::uint32_t {
  kAccepted = 0,
  kDuplicate = 1,        // the pair already has (or is building) a connection: use that one
  kWrongJob = 2,
  kWrongGeneration = 3,
  kWrongCommunicator = 4,
  kBadRank = 5,
  kBadVersion = 6,
  kUnknownSet = 7,
  kAuthFailed = 8,       // the initiator's proof of the shared secret was wrong
};

inline const char* helloStatusText(std::uint32_t s) {
  switch (s) {
    case kAccepted: return "accepted";
    case kDuplicate: return "duplicate connection";
    case kWrongJob: return "different job id";
    case kWrongGeneration: return "different restart generation (stale or future incarnation)";
    case kWrongCommunicator: return "different communicator";
    case kBadRank: return "rank outside the world or world size differs";
    case kBadVersion: return "different kumi protocol version";
    case kUnknownSet: return "unknown connection set";
    case kAuthFailed: return "authentication failed: KUMI_SECRET differs";
    default: return "unknown reason";
  }
}

}  // namespace kumi::tcp
