// Wire format of the TCP store: after the connection's handshake (store_handshake.hpp), one
// request, one reply, in order. The server's parsing is store_request.hpp, the client's
// store_reply.hpp; both enforce the limits below.
// request = u8 command, fields; reply = u8 status, fields. Strings are u32 length + bytes,
// integers little-endian. Kept tiny so that a store serves thousands of ranks from one thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kumi::store_protocol {

enum Command : std::uint8_t { kSet = 1, kGet = 2, kWait = 3, kAdd = 4, kCompareSet = 5, kRemove = 6, kCheck = 7, kPing = 8 };
enum Status : std::uint8_t { kOk = 0, kTimeout = 1, kBadRequest = 2 };

constexpr std::uint32_t kMaxKeyBytes = 4096;
constexpr std::uint32_t kMaxValueBytes = 64u << 20;
constexpr std::uint32_t kMaxKeysPerWait = 1u << 20;
// The largest request (compare-set: a key and two values) with room for its framing. A client
// sends one request and waits for the reply, so unparsed bytes beyond this are a violation; it
// also bounds a wait's key list, whatever its count says.
constexpr std::uint32_t kMaxRequestBytes = 2 * kMaxValueBytes + kMaxKeyBytes + 64;

class Writer {
 public:
  void u8(std::uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) { raw(&v, 4); }
  void i64(std::int64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    buf_.append(s);
  }
  void strs(const std::vector<std::string>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    for (const auto& s : v) str(s);
  }
  const std::string& bytes() const { return buf_; }

 private:
  void raw(const void* p, std::size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string buf_;
};

// Parses from a byte range; every accessor returns false when the data is incomplete, so the
// server can wait for more bytes without copying.
class Reader {
 public:
  Reader(const char* data, std::size_t size) : p_(data), end_(data + size) {}
  bool u8(std::uint8_t& v) { return raw(&v, 1); }
  bool u32(std::uint32_t& v) { return raw(&v, 4); }
  bool i64(std::int64_t& v) { return raw(&v, 8); }
  bool str(std::string& s, std::uint32_t limit) {
    std::uint32_t n;
    if (!u32(n)) return false;
    if (n > limit) { tooLarge_ = true; return false; }
    if (static_cast<std::size_t>(end_ - p_) < n) return false;
    s.assign(p_, n);
    p_ += n;
    return true;
  }
  bool strs(std::vector<std::string>& v, std::uint32_t limitEach) {
    std::uint32_t n;
    if (!u32(n)) return false;
    if (n > kMaxKeysPerWait) { tooLarge_ = true; return false; }
    // Every key takes at least its 4-byte length: a count the bytes at hand cannot hold is an
    // incomplete request, not a reason to allocate n strings up front.
    if (static_cast<std::size_t>(end_ - p_) / 4 < n) return false;
    v.resize(n);
    for (auto& s : v)
      if (!str(s, limitEach)) return false;
    return true;
  }
  std::size_t consumed(const char* begin) const { return static_cast<std::size_t>(p_ - begin); }
  bool tooLarge() const { return tooLarge_; }

 private:
  bool raw(void* out, std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n) return false;
    std::memcpy(out, p_, n);
    p_ += n;
    return true;
  }
  const char* p_;
  const char* end_;
  bool tooLarge_ = false;
};

}  // namespace kumi::store_protocol
