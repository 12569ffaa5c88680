#include "rendezvous/tcp_store_client.hpp"

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_reply.hpp"

namespace kumi {
namespace sp = store_protocol;

namespace {
// How long a reply may take beyond the server-side timeout before the connection is judged lost.
constexpr auto kReplyGrace = std::chrono::seconds(30);
constexpr std::uint32_t kMaxWaitMs = 0x7fffffff;
// How long the server may take to greet and to judge the hello (it answers at once when alive).
constexpr double kHandshakeSeconds = 10;

std::uint32_t clampMs(Store::Timeout t) {
  return static_cast<std::uint32_t>(std::clamp<long long>(t.count(), 0, kMaxWaitMs));
}
}  // namespace

TcpStoreClient::TcpStoreClient(const std::string& hostPort, const Deadline& connectDeadline, const std::string& secret)
    : address_(hostPort) {
  auto [host, port] = splitHostPort(hostPort, "KUMI_STORE");
  KUMI_REQUIRE_ARG(port != 0, "KUMI_STORE='", hostPort, "': port 0 cannot be connected to");
  // In a gang job the store's DNS name (a headless Service) may appear after this pod starts:
  // keep resolving, with backoff, until the deadline.
  // Cluster DNS caches a negative answer for about 30 s, so asking faster than every 2 s buys nothing.
  std::vector<SockAddr> addrs;
  const auto started = std::chrono::steady_clock::now();
  bool warned = false;
  for (auto backoff = std::chrono::milliseconds(50);; backoff = std::min(backoff * 2, std::chrono::milliseconds(2000))) {
    try {
      addrs = resolve(host, port, "KUMI_STORE");
      break;
    } catch (const Error& e) {
      if (connectDeadline.expired())
        fail(kumiTimeout, "rendezvous store ", hostPort, ": name never resolved before the deadline (", e.what(),
             "); in Kubernetes: is the coordinator pod running, and is its headless Service (with "
             "publishNotReadyAddresses: true) its subdomain?");
      if (!warned && std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) {
        KUMI_WARN("rendezvous store ", hostPort, ": the name has not resolved for 10 s (", e.what(),
                  "); still trying until the deadline (", connectDeadline.msLeft() / 1000, " s left)");
        warned = true;
      }
      KUMI_INFO(e.what(), "; retrying");
      std::this_thread::sleep_for(std::min(backoff, std::chrono::milliseconds(connectDeadline.msLeft() + 1)));
    }
  }
  // A connection may break during the handshake (a server flooded by strangers drops its oldest
  // handshakes): connect afresh until the deadline. A refusal is final.
  for (auto backoff = std::chrono::milliseconds(20);; backoff = std::min(backoff * 2, std::chrono::milliseconds(1000))) {
    Fd fd = connectWithRetry(addrs, connectDeadline, cat("rendezvous store ", hostPort));
    std::string broken;
    if (handshake(fd.get(), connectDeadline.earlier(Deadline::after(kHandshakeSeconds)), secret, &broken)) {
      fd_ = std::move(fd);
      break;
    }
    if (connectDeadline.expired())
      fail(kumiTimeout, "rendezvous store ", hostPort, ": connected, but the handshake never completed before the deadline (",
           broken, ")");
    KUMI_INFO("store at ", hostPort, ": handshake broke off (", broken, "); connecting again");
    std::this_thread::sleep_for(std::min(backoff, std::chrono::milliseconds(connectDeadline.msLeft() + 1)));
  }
  server_ = peerAddress(fd_.get());
}

bool TcpStoreClient::handshake(int fd, const Deadline& deadline, const std::string& secret, std::string* brokenBecause) {
  const std::string ctx = cat("store at ", address_);
  sp::Greeting greeting;
  try {
    readFull(fd, &greeting, sizeof greeting, deadline, ctx + ": greeting");
  } catch (const Error& e) {
    *brokenBecause = e.what();
    return false;
  }
  const sp::GreetingCheck check = sp::checkGreeting(greeting, !secret.empty());
  if (check != sp::GreetingCheck::kOk) fail(kumiRemoteError, ctx, " ", sp::describe(check));
  auth::Nonce serverNonce, clientNonce{};
  std::memcpy(serverNonce.data(), greeting.nonce, serverNonce.size());
  if (!secret.empty()) clientNonce = auth::randomNonce();
  const sp::ClientHello hello = sp::makeClientHello(secret, serverNonce, clientNonce);
  sp::Verdict verdict{};
  try {
    writeFull(fd, &hello, sizeof hello, deadline, ctx + ": hello");
    // Without a secret there is no verdict: the first request follows the hello at once.
    if (secret.empty()) return true;
    readFull(fd, &verdict, sizeof verdict, deadline, ctx + ": authentication");
  } catch (const Error& e) {
    *brokenBecause = e.what();
    return false;
  }
  if (verdict.accepted != 1)
    fail(kumiRemoteError, ctx, " refused authentication: KUMI_SECRET differs from the store's");
  if (!sp::verdictProvesServer(verdict, secret, serverNonce, clientNonce))
    fail(kumiRemoteError, ctx, " could not prove that it knows KUMI_SECRET: the secrets differ, or this is not the "
                               "job's store");
  return true;
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

// Replies come straight from the socket, bounded by the request's deadline.
class SocketSource final : public sp::ByteSource {
 public:
  SocketSource(int fd, const Deadline& deadline, const std::string& context)
      : fd_(fd), deadline_(deadline), context_(context) {}
  void read(void* out, std::size_t n) override { readFull(fd_, out, n, deadline_, context_); }

 private:
  int fd_;
  const Deadline& deadline_;
  const std::string& context_;
};
}  // namespace

sp::Reply TcpStoreClient::exchange(const std::string& request, sp::Command command, Timeout serverTimeout,
                                   const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fd_.valid()) fail(kumiRemoteError, "store ", address_, ": connection was lost earlier");
  sent_.fetch_add(1, std::memory_order_relaxed);
  if (command == sp::kWait || command == sp::kCheck) polls_.fetch_add(1, std::memory_order_relaxed);
  const auto deadline = Deadline::after(std::chrono::duration<double>(serverTimeout + kReplyGrace).count());
  const std::string ctx = cat("store ", address_, " ", what);
  try {
    writeFull(fd_.get(), request.data(), request.size(), deadline, ctx);
    SocketSource source(fd_.get(), deadline, ctx);
    return sp::readReply(source, command, ctx);
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
  exchange(w.bytes(), sp::kSet, Timeout(0), "set");
}

std::string TcpStoreClient::get(const std::string& key, Timeout timeout) {
  checkKey(key);
  sp::Writer w;
  w.u8(sp::kGet);
  w.str(key);
  w.u32(clampMs(timeout));
  sp::Reply r = exchange(w.bytes(), sp::kGet, timeout, "get");
  if (r.status == sp::kTimeout)
    fail(kumiTimeout, "store ", address_, ": key '", key, "' did not appear within ", timeout.count(), " ms");
  return std::move(r.value);
}

std::vector<std::string> TcpStoreClient::waitFor(const std::vector<std::string>& keys, Timeout timeout) {
  for (const auto& k : keys) checkKey(k);
  sp::Writer w;
  w.u8(sp::kWait);
  w.strs(keys);
  w.u32(clampMs(timeout));
  return exchange(w.bytes(), sp::kWait, timeout, "wait").missing;
}

std::int64_t TcpStoreClient::add(const std::string& key, std::int64_t delta) {
  checkKey(key);
  sp::Writer w;
  w.u8(sp::kAdd);
  w.str(key);
  w.i64(delta);
  return exchange(w.bytes(), sp::kAdd, Timeout(0), "add").integer;
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
  return exchange(w.bytes(), sp::kCompareSet, Timeout(0), "compare-set").value;
}

bool TcpStoreClient::remove(const std::string& key) {
  sp::Writer w;
  w.u8(sp::kRemove);
  w.str(key);
  return exchange(w.bytes(), sp::kRemove, Timeout(0), "remove").integer != 0;
}

bool TcpStoreClient::check(const std::vector<std::string>& keys) {
  sp::Writer w;
  w.u8(sp::kCheck);
  w.strs(keys);
  return exchange(w.bytes(), sp::kCheck, Timeout(0), "check").integer != 0;
}

}  // namespace kumi
