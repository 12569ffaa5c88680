#include "rendezvous/tcp_store_client.hpp"

#include <algorithm>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "rendezvous/store_protocol.hpp"

namespace kumi {
namespace sp = store_protocol;

namespace {
// How long a reply may take beyond the server-side timeout before the connection is judged lost.
constexpr auto kReplyGrace = std::chrono::seconds(30);
constexpr std::uint32_t kMaxWaitMs = 0x7fffffff;

std::uint32_t clampMs(Store::Timeout t) {
  return static_cast<std::uint32_t>(std::clamp<long long>(t.count(), 0, kMaxWaitMs));
}
}  // namespace

TcpStoreClient::TcpStoreClient(const std::string& hostPort, const Deadline& connectDeadline) : address_(hostPort) {
  auto [host, port] = splitHostPort(hostPort, "KUMI_STORE");
  KUMI_REQUIRE_ARG(port != 0, "KUMI_STORE='", hostPort, "': port 0 cannot be connected to");
  // In a gang job the store's DNS name (a headless Service) may appear after this pod starts:
  // keep resolving, with backoff, until the deadline.
  std::vector<SockAddr> addrs;
  for (auto backoff = std::chrono::milliseconds(50);; backoff = std::min(backoff * 2, std::chrono::milliseconds(2000))) {
    try {
      addrs = resolve(host, port, "KUMI_STORE");
      break;
    } catch (const Error& e) {
      if (connectDeadline.expired())
        fail(kumiTimeout, "rendezvous store ", hostPort, ": name never resolved before the deadline (", e.what(), ")");
      KUMI_INFO(e.what(), "; retrying");
      std::this_thread::sleep_for(std::min(backoff, std::chrono::milliseconds(connectDeadline.msLeft() + 1)));
    }
  }
  fd_ = connectWithRetry(addrs, connectDeadline, cat("rendezvous store ", hostPort));
  server_ = peerAddress(fd_.get());
}

namespace {
void checkKey(const std::string& key) {
  KUMI_REQUIRE_ARG(!key.empty() && key.size() <= sp::kMaxKeyBytes, "store key of ", key.size(),
                   " bytes: keys must have 1 to ", sp::kMaxKeyBytes, " bytes");
}
void checkValue(const std::string& v) {
  KUMI_REQUIRE_ARG(v.size() <= sp::kMaxValueBytes, "store value of ", v.size(), " bytes exceeds the limit of ",
                   sp::kMaxValueBytes);
}
}  // namespace

std::string TcpStoreClient::roundTrip(const std::string& request, Timeout serverTimeout, const char* what) {
  if (!fd_.valid()) fail(kumiRemoteError, "store ", address_, ": connection was lost earlier");
  auto deadline = Deadline::after(std::chrono::duration<double>(serverTimeout + kReplyGrace).count());
  std::string ctx = cat("store ", address_, " ", what);
  try {
    writeFull(fd_.get(), request.data(), request.size(), deadline, ctx);
    std::uint8_t status;
    readFull(fd_.get(), &status, 1, deadline, ctx);
    // Replies are small: read the fixed or length-prefixed fields that follow by command.
    return std::string(1, static_cast<char>(status));
  } catch (...) {
    fd_.reset();
    throw;
  }
}

namespace {
std::string readString(int fd, const Deadline& d, const std::string& ctx) {
  std::uint32_t n;
  readFull(fd, &n, 4, d, ctx);
  if (n > sp::kMaxValueBytes) fail(kumiRemoteError, ctx, ": reply too large (", n, " bytes)");
  std::string s(n, '\0');
  if (n) readFull(fd, s.data(), n, d, ctx);
  return s;
}
}  // namespace

void TcpStoreClient::set(const std::string& key, const std::string& value) {
  checkKey(key);
  checkValue(value);
  sp::Writer w;
  w.u8(sp::kSet);
  w.str(key);
  w.str(value);
  std::lock_guard<std::mutex> lock(mutex_);
  roundTrip(w.bytes(), Timeout(0), "set");
}

std::string TcpStoreClient::get(const std::string& key, Timeout timeout) {
  checkKey(key);
  sp::Writer w;
  w.u8(sp::kGet);
  w.str(key);
  w.u32(clampMs(timeout));
  std::lock_guard<std::mutex> lock(mutex_);
  std::string st = roundTrip(w.bytes(), timeout, "get");
  auto d = Deadline::after(30);
  std::string ctx = cat("store ", address_, " get");
  if (st[0] == sp::kTimeout) {
    std::uint32_t n;
    readFull(fd_.get(), &n, 4, d, ctx);
    for (std::uint32_t i = 0; i < n; ++i) readString(fd_.get(), d, ctx);
    fail(kumiTimeout, "store ", address_, ": key '", key, "' did not appear within ", timeout.count(), " ms");
  }
  return readString(fd_.get(), d, ctx);
}

std::vector<std::string> TcpStoreClient::waitFor(const std::vector<std::string>& keys, Timeout timeout) {
  for (const auto& k : keys) checkKey(k);
  sp::Writer w;
  w.u8(sp::kWait);
  w.strs(keys);
  w.u32(clampMs(timeout));
  std::lock_guard<std::mutex> lock(mutex_);
  std::string st = roundTrip(w.bytes(), timeout, "wait");
  std::vector<std::string> missing;
  if (st[0] == sp::kTimeout) {
    auto d = Deadline::after(30);
    std::string ctx = cat("store ", address_, " wait");
    std::uint32_t n;
    readFull(fd_.get(), &n, 4, d, ctx);
    for (std::uint32_t i = 0; i < n; ++i) missing.push_back(readString(fd_.get(), d, ctx));
  }
  return missing;
}

std::int64_t TcpStoreClient::add(const std::string& key, std::int64_t delta) {
  checkKey(key);
  sp::Writer w;
  w.u8(sp::kAdd);
  w.str(key);
  w.i64(delta);
  return integerReply(w.bytes(), "add");
}

std::string TcpStoreClient::compareSet(const std::string& key, const std::string& expected, const std::string& desired) {
  checkKey(key);
  checkValue(expected);
  checkValue(desired);
  sp::Writer w;
  w.u8(sp::kCompareSet);
  w.str(key);
  w.str(expected);
  w.str(desired);
  std::lock_guard<std::mutex> lock(mutex_);
  roundTrip(w.bytes(), Timeout(0), "compare-set");
  return readString(fd_.get(), Deadline::after(30), "store compare-set");
}

bool TcpStoreClient::remove(const std::string& key) {
  sp::Writer w;
  w.u8(sp::kRemove);
  w.str(key);
  return integerReply(w.bytes(), "remove") != 0;
}

bool TcpStoreClient::check(const std::vector<std::string>& keys) {
  sp::Writer w;
  w.u8(sp::kCheck);
  w.strs(keys);
  return integerReply(w.bytes(), "check") != 0;
}

std::int64_t TcpStoreClient::integerReply(const std::string& request, const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  roundTrip(request, Timeout(0), what);
  std::int64_t v;
  readFull(fd_.get(), &v, 8, Deadline::after(30), cat("store ", what));
  return v;
}

}  // namespace kumi
