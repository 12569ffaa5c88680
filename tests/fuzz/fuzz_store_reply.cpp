// The store client's side of the wire: the server's greeting, the verdict of the secret check,
// and the reply to each kind of request, as the client reads them. Input: one byte says what to
// read (low bits: the request's command; 0x80: a greeting, 0x40: a verdict), the rest is what
// the "server" sent.
#include <cstring>

#include "fuzz_input.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_reply.hpp"

namespace sp = kumi::store_protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kumi::fuzz::Input in(data, size);
  const std::uint8_t what = in.byte();
  if (what & 0x80) {
    sp::Greeting g{};
    const std::string bytes = in.take(sizeof g);
    std::memcpy(&g, bytes.data(), bytes.size());
    (void)sp::describe(sp::checkGreeting(g, (what & 1) != 0));
    return 0;
  }
  if (what & 0x40) {
    sp::Verdict v{};
    const std::string bytes = in.take(sizeof v);
    std::memcpy(&v, bytes.data(), bytes.size());
    (void)sp::verdictProvesServer(v, kumi::fuzz::kSecret, kumi::fuzz::fixedNonce(0x5a), kumi::fuzz::fixedNonce(0xc1));
    return 0;
  }
  const auto command = static_cast<sp::Command>(1 + (what & 0x3f) % sp::kPing);
  kumi::fuzz::MemorySource source(in);
  try {
    sp::Reply r = sp::readReply(source, command, "fuzz");
    // What a reply may hold is bounded by the protocol, whatever the bytes claimed.
    if (r.value.size() > sp::kMaxValueBytes || r.missing.size() > sp::kMaxKeysPerWait) __builtin_trap();
    for (const auto& k : r.missing)
      if (k.size() > sp::kMaxKeyBytes) __builtin_trap();
  } catch (const kumi::Error&) {
    // Refused: what the client does with anything a store never sends.
  }
  return 0;
}
