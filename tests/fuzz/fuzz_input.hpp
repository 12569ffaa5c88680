// Reading a libFuzzer input piece by piece: a cursor that hands out bytes until they run out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "rendezvous/store_reply.hpp"

namespace kumi::fuzz {

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  bool empty() const { return p_ == end_; }
  std::uint8_t byte() {
    if (p_ == end_) return 0;
    return *p_++;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(byte() | byte() << 8); }
  // Up to n bytes (fewer at the end).
  std::string take(std::size_t n) {
    n = n < left() ? n : left();
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  std::string rest() { return take(left()); }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// A store reply stream made of fuzzer bytes: running dry is what a closed connection would be.
class MemorySource final : public store_protocol::ByteSource {
 public:
  explicit MemorySource(Input& in) : in_(in) {}
  void read(void* out, std::size_t n) override {
    if (in_.left() < n) fail(kumiRemoteError, "fuzz input: connection closed by peer");
    const std::string s = in_.take(n);
    std::memcpy(out, s.data(), n);
  }

 private:
  Input& in_;
};

// Fixed nonces and secret, so that the committed seeds (made by make_seeds) carry valid proofs.
inline constexpr const char* kSecret = "fuzz-secret";
inline auth::Nonce fixedNonce(std::uint8_t fill) {
  auth::Nonce n;
  n.fill(fill);
  return n;
}

}  // namespace kumi::fuzz
