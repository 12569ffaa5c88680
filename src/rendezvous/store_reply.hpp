// The client's reading of a store reply: what it accepts from the wire, as one function over a
// byte source, so that the socket and the fuzzer (tests/fuzz/) run the same checks. A reply that
// a store never sends (a status that does not fit the request, a length over the protocol's
// limits) is an error, never an allocation of what the length claims.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rendezvous/store_protocol.hpp"

namespace kumi::store_protocol {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Fills all n bytes or throws (kumi::Error: closed, timed out, no more input).
  virtual void read(void* out, std::size_t n) = 0;
};

struct Reply {
  Status status = kOk;
  std::string value;                  // get, compare-set
  std::vector<std::string> missing;   // get and wait that timed out: the keys still missing
  std::int64_t integer = 0;           // add, remove, check
};

// Reads the reply to a request of `command`; throws kumiRemoteError starting with `context` when
// the bytes are not a reply to it.
Reply readReply(ByteSource& in, Command command, const std::string& context);

}  // namespace kumi::store_protocol
