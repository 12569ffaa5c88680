#include "rendezvous/tcp_store_server.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <list>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rate_limit.hpp"
#include "rendezvous/store_engine.hpp"
#include "rendezvous/store_handshake.hpp"

namespace kumi {
namespace sp = store_protocol;
using Clock = std::chrono::steady_clock;

namespace {

struct Client : StoreEngine::Session {
  Fd fd;
  std::string from;          // "host:port", for warnings
  std::size_t outSent = 0;
  bool closing = false;      // dropped at the end of this turn of the loop
  bool closeWhenFlushed = false;  // refused: the verdict goes out, then the connection closes
  bool ready = false;        // handshake done: requests are served
  Clock::time_point acceptedAt;
  auth::Nonce serverNonce{};
  bool inPending = false;    // in State::pending (the handshake is not over)
  std::list<int>::iterator pendingPos;
};

// Handshakes in flight may use at most a quarter of this process's descriptors, so that a flood
// never takes the ones real clients (and, in rank 0, the job itself) need.
// Connections taken off the listen queue per turn of the loop (see State::accept).
constexpr std::size_t kAcceptBatch = 64;

std::size_t pendingLimit() {
  rlimit lim{};
  std::size_t quarter = 256;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    quarter = static_cast<std::size_t>(lim.rlim_cur / 4);
  return std::clamp<std::size_t>(quarter, 16, TcpStoreServer::kMaxPendingHandshakes);
}

}  // namespace

struct TcpStoreServer::State {
  int epfd = -1;
  std::string secret;
  std::size_t maxPending = pendingLimit();
  StoreEngine engine;
  std::unordered_map<int, std::unique_ptr<Client>> clients;
  std::list<int> pending;  // clients in the handshake, oldest first
  int listenFd = -1;
  bool acceptPaused = false;  // the listener is out of epoll's interest (see pauseAccepting)
  LogLimiter strangerWarnings;

  ~State() {
    if (epfd >= 0) ::close(epfd);
  }

  // A stranger's doing: logged, but a flood of them costs a few lines per 10 s.
  template <class... Args>
  void warnStranger(const Args&... args) {
    std::size_t suppressed = 0;
    if (!strangerWarnings.allow(&suppressed)) return;
    if (suppressed)
      KUMI_WARN("store server: ", args..., " (", suppressed, " similar warnings suppressed before this one)");
    else
      KUMI_WARN("store server: ", args...);
  }

  void leavePending(Client& c) {
    if (!c.inPending) return;
    pending.erase(c.pendingPos);
    c.inPending = false;
  }

  void drop(Client& c) {
    c.closing = true;
    leavePending(c);
  }

  // Takes at most kAcceptBatch connections off the listen queue per turn of the loop: when
  // thousands of ranks connect at once, the hellos of those already greeted are read in between,
  // so their handshakes finish instead of piling up against the cap. The rest wait in the
  // kernel's queue (the listener stays readable, so the next turn takes more).
  void accept(std::vector<char>& buf, std::vector<StoreEngine::Session*>& touched) {
    for (std::size_t taken = 0; taken < kAcceptBatch; ++taken) {
      if (!makeRoomForHandshake(buf, touched)) return pauseAccepting(true);
      int cfd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: a stranger's handshake gives its one back (at the end of this turn);
          // with none to take, pause instead of spinning on the readable listener.
          warnStranger("out of file descriptors with ", clients.size(), " clients (raise ulimit -n)");
          if (!pending.empty()) drop(*clients.at(pending.front()));
          else std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return;
      }
      setNoDelay(cfd);
      auto c = std::make_unique<Client>();
      c->fd = Fd(cfd);
      c->from = peerAddress(cfd).str();
      c->acceptedAt = Clock::now();
      if (!secret.empty()) c->serverNonce = auth::randomNonce();
      const sp::Greeting g = sp::makeGreeting(!secret.empty(), c->serverNonce);
      c->out.assign(reinterpret_cast<const char*>(&g), sizeof g);
      c->pendingPos = pending.insert(pending.end(), cfd);
      c->inPending = true;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = cfd;
      ::epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
      Client& added = *c;
      clients[cfd] = std::move(c);
      flush(added);
    }
  }

  // Room for one more handshake under the cap. A stranger may open connections faster than it
  // completes handshakes, so the oldest is pushed out to keep the newest; but the oldest may be
  // a rank whose hello already waits in its socket, unread only because this loop was busy
  // accepting: read it first. And a rank that has not answered yet is pushed out only after
  // kHandshakeGraceSeconds (4096 ranks connecting at once to a busy host answer late, not never);
  // until then the listener pauses and new connections wait in the kernel's listen queue.
  bool makeRoomForHandshake(std::vector<char>& buf, std::vector<StoreEngine::Session*>& touched) {
    while (pending.size() >= maxPending) {
      Client& oldest = *clients.at(pending.front());
      receive(oldest, buf, touched);
      touched.push_back(&oldest);
      if (!oldest.inPending) continue;  // its handshake is over (or it is gone)
      if (Clock::now() < graceEnd(oldest)) return false;
      warnStranger("more than ", maxPending, " connections in the handshake; dropping the oldest, from ",
                   oldest.from);
      drop(oldest);
    }
    return true;
  }

  static Clock::time_point graceEnd(const Client& c) {
    return c.acceptedAt + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(kHandshakeGraceSeconds));
  }

  // The listener leaves epoll's interest while the cap is full of young handshakes (it is
  // level-triggered: left in, it would wake the loop without end).
  void pauseAccepting(bool pause) {
    if (acceptPaused == pause) return;
    epoll_event ev{};
    ev.events = pause ? 0u : static_cast<unsigned>(EPOLLIN);
    ev.data.fd = listenFd;
    ::epoll_ctl(epfd, EPOLL_CTL_MOD, listenFd, &ev);
    acceptPaused = pause;
  }

  // Once the oldest handshake's grace is over, or handshakes finished, the listener comes back.
  void resumeAcceptingWhenDue(Clock::time_point now) {
    if (acceptPaused && (pending.size() < maxPending || now >= graceEnd(*clients.at(pending.front()))))
      pauseAccepting(false);
  }

  // The client's first bytes: its hello (with its proof when a secret is set).
  void handshake(Client& c) {
    sp::ClientHello hello;
    switch (sp::checkClientHello(c.in.data(), c.in.size(), secret, c.serverNonce, &hello)) {
      case sp::HelloCheck::kNeedMore:
        return;
      case sp::HelloCheck::kNotKumi:
        warnStranger("dropped a connection from ", c.from, ": it did not start with a kumi store hello");
        drop(c);
        return;
      case sp::HelloCheck::kBadVersion:
        warnStranger("dropped a connection from ", c.from, ": kumi store protocol version ", int(hello.version),
                     ", this server speaks ", int(sp::kWireVersion));
        drop(c);
        return;
      case sp::HelloCheck::kNoSecret:
      case sp::HelloCheck::kWrongSecret: {
        warnStranger("refused ", c.from, ": authentication failed (",
                     hello.flags & sp::kFlagAuth ? "wrong secret" : "no secret", "; KUMI_SECRET differs)");
        const sp::Verdict v = sp::makeVerdict(false, secret, c.serverNonce, {});
        c.out.append(reinterpret_cast<const char*>(&v), sizeof v);
        c.in.clear();
        c.closeWhenFlushed = true;
        leavePending(c);  // it only waits for its verdict to go out
        return;
      }
      case sp::HelloCheck::kOk:
        break;
    }
    if (!secret.empty()) {
      auth::Nonce clientNonce;
      std::memcpy(clientNonce.data(), hello.nonce, clientNonce.size());
      const sp::Verdict v = sp::makeVerdict(true, secret, c.serverNonce, clientNonce);
      c.out.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    c.in.erase(0, sizeof(sp::ClientHello));
    leavePending(c);
    c.ready = true;
  }

  // Reads what arrived, then handshakes or serves.
  void receive(Client& c, std::vector<char>& buf, std::vector<StoreEngine::Session*>& touched) {
    // Never buffer more than one request can hold: a client that streams bytes without end is
    // dropped once it passes that, instead of growing this server's memory. Before its hello is
    // judged, a connection gets no more than the hello (the rest waits in the socket).
    const std::size_t limit = c.ready ? static_cast<std::size_t>(sp::kMaxRequestBytes) + 1 : sizeof(sp::ClientHello);
    if (c.closeWhenFlushed) c.in.clear();  // refused: whatever it still sends is ignored
    while (c.in.size() < limit) {
      ssize_t r = ::recv(c.fd.get(), buf.data(), std::min(buf.size(), limit - c.in.size()), MSG_DONTWAIT);
      if (r > 0) {
        c.in.append(buf.data(), static_cast<std::size_t>(r));
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) drop(c);
      break;
    }
    if (c.closing || c.closeWhenFlushed) return;
    if (c.in.size() > sp::kMaxRequestBytes) {
      warnStranger("dropped ", c.from, ": it sent more than the largest request (", sp::kMaxRequestBytes,
                   " bytes) without waiting for replies");
      drop(c);
      return;
    }
    if (!c.ready) handshake(c);
    serve(c, touched);
  }

  // Executes the client's complete requests, if it may make any.
  void serve(Client& c, std::vector<StoreEngine::Session*>& touched) {
    if (!c.ready || c.closing || c.closeWhenFlushed || c.parked || c.in.empty()) return;
    if (!engine.handleInput(c, touched)) {
      warnStranger("malformed request from ", c.from, "; closing it");
      drop(c);
    }
  }

  // Sends what it can; true when the client's output is drained.
  bool flush(Client& c) {
    while (c.outSent < c.out.size()) {
      ssize_t n = ::send(c.fd.get(), c.out.data() + c.outSent, c.out.size() - c.outSent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.outSent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      drop(c);
      return false;
    }
    c.out.clear();
    c.outSent = 0;
    if (c.closeWhenFlushed) drop(c);
    return true;
  }

  // Handshakes that did not finish in time: a silent or slow stranger holds nothing for long.
  void expireHandshakes(Clock::time_point now) {
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kHandshakeSeconds));
    while (!pending.empty()) {
      Client& c = *clients.at(pending.front());
      if (now - c.acceptedAt < limit) break;
      warnStranger("dropped ", c.from, ": no handshake within ", kHandshakeSeconds, " s");
      drop(c);
    }
  }

  int msUntilNextEvent(Clock::time_point now) const {
    int ms = engine.msUntilNextExpiry(now, 1000);
    if (!pending.empty()) {
      const auto due = clients.at(pending.front())->acceptedAt +
                       std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kHandshakeSeconds));
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count() + 1;
      ms = static_cast<int>(std::clamp<long long>(left, 0, ms));
      if (acceptPaused) {
        const auto graceLeft = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   graceEnd(*clients.at(pending.front())) - now).count() + 1;
        ms = static_cast<int>(std::clamp<long long>(graceLeft, 0, ms));
      }
    }
    return ms;
  }
};

TcpStoreServer::TcpStoreServer(const SockAddr& addr, std::string secret)
    : secret_(std::move(secret)), state_(std::make_unique<State>()) {
  listener_ = listenOn(addr, 4096, "kumi store server");
  setNonBlocking(listener_.get(), true);
  address_ = localAddress(listener_.get());
  state_->secret = secret_;
  state_->listenFd = listener_.get();
  wakeFd_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  state_->epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (state_->epfd < 0 || !wakeFd_.valid()) failErrno("kumi store server: epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener_.get();
  ::epoll_ctl(state_->epfd, EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.fd = wakeFd_.get();
  ::epoll_ctl(state_->epfd, EPOLL_CTL_ADD, wakeFd_.get(), &ev);
  KUMI_INFO("store server listening on ", address_.str(), secret_.empty() ? " (no secret)" : " (clients must prove the secret)");
}

TcpStoreServer::~TcpStoreServer() { stop(); }

void TcpStoreServer::start() {
  thread_ = std::thread([this] { serve(); });
}

void TcpStoreServer::stop() {
  stopping_.store(true);
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wakeFd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void TcpStoreServer::serve() {
  State& s = *state_;
  std::vector<epoll_event> events(256);
  std::vector<char> buf(64 * 1024);
  std::optional<Clock::time_point> lingerUntil;
  auto keepServing = [&] {
    if (!stopping_.load()) return true;
    const auto now = Clock::now();
    if (!lingerUntil) {
      const bool story = s.engine.holdsKeyNamed("abort");
      lingerUntil = story ? now + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(kNoticeLingerSeconds))
                          : now;
      if (story && !s.clients.empty())
        KUMI_INFO("store server: stopping; serving the failure notice to ", s.clients.size(),
                  " connected client(s) for up to ", kNoticeLingerSeconds, " s");
    }
    return now < *lingerUntil && !s.clients.empty();
  };
  while (keepServing()) {
    // While lingering, look at the clock often (clients leaving end it) instead of sleeping.
    const int waitMs = lingerUntil ? std::min(50, std::max(0, s.msUntilNextEvent(Clock::now()))) : s.msUntilNextEvent(Clock::now());
    int n = ::epoll_wait(s.epfd, events.data(), static_cast<int>(events.size()), waitMs);
    std::vector<StoreEngine::Session*> touched;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wakeFd_.get()) {
        std::uint64_t drained;  // level-triggered: read it, or a lingering loop would spin
        [[maybe_unused]] auto r = ::read(wakeFd_.get(), &drained, sizeof drained);
        continue;
      }
      if (fd == listener_.get()) {
        s.accept(buf, touched);
        continue;
      }
      auto it = s.clients.find(fd);
      if (it == s.clients.end() || it->second->closing) continue;
      Client& c = *it->second;
      if (events[i].events & EPOLLIN) s.receive(c, buf, touched);
      if (events[i].events & (EPOLLHUP | EPOLLERR)) s.drop(c);
      touched.push_back(&c);
    }
    const auto now = Clock::now();
    s.engine.expire(now, touched);
    s.expireHandshakes(now);
    s.resumeAcceptingWhenDue(now);
    // Flush replies; a client unparked by a reply may have more requests buffered.
    for (std::size_t i = 0; i < touched.size(); ++i) {
      auto* c = static_cast<Client*>(touched[i]);
      bool drained = false;
      std::size_t before;
      do {  // requests held back while a reply was unsent may go now
        before = c->in.size();
        s.serve(*c, touched);
        if (c->closing) break;
        drained = s.flush(*c);
      } while (drained && !c->closing && !c->in.empty() && c->in.size() < before);
      if (c->closing) continue;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (drained ? 0u : static_cast<unsigned>(EPOLLOUT));
      ev.data.fd = c->fd.get();
      ::epoll_ctl(s.epfd, EPOLL_CTL_MOD, c->fd.get(), &ev);
    }
    for (auto it = s.clients.begin(); it != s.clients.end();) {
      if (it->second->closing) {
        s.engine.forget(it->second.get());
        ::epoll_ctl(s.epfd, EPOLL_CTL_DEL, it->first, nullptr);
        it = s.clients.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace kumi
