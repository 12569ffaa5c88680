// The store server's input path: the client's hello (with and without a secret), then requests
// parsed and executed by the real engine, for up to three interleaved clients, then every parked
// wait expired and every client gone. Input: one byte of setup, then chunks of
// [client index][u16 length][bytes], each delivered to that client as if it had arrived.
#include <array>
#include <memory>
#include <vector>

#include "fuzz_input.hpp"
#include "rendezvous/store_engine.hpp"
#include "rendezvous/store_handshake.hpp"

namespace sp = kumi::store_protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kumi::fuzz::Input in(data, size);
  const std::uint8_t setup = in.byte();
  const std::string secret = (setup & 1) ? kumi::fuzz::kSecret : "";
  const kumi::auth::Nonce serverNonce = kumi::fuzz::fixedNonce(0x5a);
  kumi::StoreEngine engine;
  struct Client {
    kumi::StoreEngine::Session session;
    bool ready = false;
    bool dropped = false;
  };
  std::array<Client, 3> clients;
  std::vector<kumi::StoreEngine::Session*> touched;
  while (!in.empty()) {
    Client& c = clients[in.byte() % clients.size()];
    const std::uint16_t n = in.u16();
    if (c.dropped) {
      in.take(n);
      continue;
    }
    c.session.in += in.take(n);
    if (!c.ready) {
      sp::ClientHello hello;
      switch (sp::checkClientHello(c.session.in.data(), c.session.in.size(), secret, serverNonce, &hello)) {
        case sp::HelloCheck::kNeedMore:
          continue;
        case sp::HelloCheck::kOk:
          c.session.in.erase(0, sizeof(sp::ClientHello));
          c.ready = true;
          break;
        default:
          c.dropped = true;
          continue;
      }
    }
    if (!engine.handleInput(c.session, touched)) {
      engine.forget(&c.session);
      c.dropped = true;
    }
    // A real server sends and forgets replies; keep memory flat across long inputs.
    for (auto& other : clients) other.session.out.clear();
  }
  engine.expire(kumi::StoreEngine::Clock::now() + std::chrono::hours(24 * 365), touched);
  for (auto& c : clients) engine.forget(&c.session);
  return 0;
}
