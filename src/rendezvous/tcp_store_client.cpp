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

namespace {
std::string readString(int fd, const Deadline& d, const std::string& ctx) {
  std::uint32_t n;
  readFull(fd, &n, 4, d, ctx);
  if (n > sp::kMaxValueBytes) fail(kumiRemoteError, ctx, ": reply too large (", n, " bytes)");
  std::string s(n, '\0');
  if (n) readFull(fd, s.data(), n, d, ctx);
  return s;
}

// The keys of a timeout reply (get, wait): what is still missing.
std::vector<std::string> readMissing(int fd, const Deadline& d, const std::string& ctx) {
  std::uint32_t n;
  readFull(fd, &n, 4, d, ctx);
  std::vector<std::string> missing;
  for (std::uint32_t i = 0; i < n; ++i) missing.push_back(readString(fd, d, ctx));
  return missing;
}
}  // namespace

template <class ReadReply>
auto TcpStoreClient::exchange(const std::string& request, Timeout serverTimeout, const char* what, ReadReply read) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fd_.valid()) fail(kumiRemoteError, "store ", address_, ": connection was lost earlier");
  const auto deadline = Deadline::after(std::chrono::duration<double>(serverTimeout + kReplyGrace).count());
  const std::string ctx = cat("store ", address_, " ", what);
  try {
    writeFull(fd_.get(), request.data(), request.size(), deadline, ctx);
    std::uint8_t status;
    readFull(fd_.get(), &status, 1, deadline, ctx);
    return read(status, deadline, ctx);
  } catch (...) {
    fd_.reset();  // a half-read reply would desynchronise every later request
    throw;
  }
}

void TcpStoreClient::set(const std::string& key, const std::string& value) {
  checkKey(key);
  checkValue(value);
  sp::Writer w;
  w.u8(sp::kSet);
  w.str(key);
  w.str(value);
  exchange(w.bytes(), Timeout(0), "set", [](std::uint8_t, const Deadline&, const std::string&) { return 0; });
}

std::string TcpStoreClient::get(const std::string& key, Timeout timeout) {
  checkKey(key);
  sp::Writer w;
  w.u8(sp::kGet);
  w.str(key);
  w.u32(clampMs(timeout));
  auto [found, value] = exchange(w.bytes(), timeout, "get", [&](std::uint8_t st, const Deadline& d, const std::string& ctx) {
    if (st == sp::kTimeout) {
      readMissing(fd_.get(), d, ctx);
      return std::pair<bool, std::string>(false, {});
    }
    return std::pair<bool, std::string>(true, readString(fd_.get(), d, ctx));
  });
  if (!found) fail(kumiTimeout, "store ", address_, ": key '", key, "' did not appear within ", timeout.count(), " ms");
  return value;
}

std::vector<std::string> TcpStoreClient::waitFor(const std::vector<std::string>& keys, Timeout timeout) {
  for (const auto& k : keys) checkKey(k);
  sp::Writer w;
  w.u8(sp::kWait);
  w.strs(keys);
  w.u32(clampMs(timeout));
  return exchange(w.bytes(), timeout, "wait", [&](std::uint8_t st, const Deadline& d, const std::string& ctx) {
    return st == sp::kTimeout ? readMissing(fd_.get(), d, ctx) : std::vector<std::string>{};
  });
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
  return exchange(w.bytes(), Timeout(0), "compare-set", [&](std::uint8_t, const Deadline& d, const std::string& ctx) {
    return readString(fd_.get(), d, ctx);
  });
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
  return exchange(request, Timeout(0), what, [&](std::uint8_t, const Deadline& d, const std::string& ctx) {
    std::int64_t v;
    readFull(fd_.get(), &v, 8, d, ctx);
    return v;
  });
}

}  // namespace kumi
