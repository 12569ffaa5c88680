#include "rendezvous/tcp_store_server.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <list>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"
#include "rendezvous/store_protocol.hpp"

namespace kumi {
namespace sp = store_protocol;
using Clock = std::chrono::steady_clock;

namespace {

struct Client;

// A get or wait parked until its keys exist.
struct Waiter {
  Client* client;
  std::vector<std::string> keys;
  Clock::time_point deadline;
  bool isGet;
};

struct Client {
  Fd fd;
  std::string in;   // bytes received, not yet parsed
  std::string out;  // bytes to send
  std::size_t outSent = 0;
  bool parked = false;  // a waiter holds the reply; parse nothing more until it is answered
  bool closing = false;
};

}  // namespace

struct TcpStoreServer::State {
  int epfd = -1;
  std::unordered_map<int, std::unique_ptr<Client>> clients;
  std::unordered_map<std::string, std::string> data;
  std::list<Waiter> waiters;
  std::unordered_map<std::string, std::vector<std::list<Waiter>::iterator>> waitersByKey;

  ~State() {
    if (epfd >= 0) ::close(epfd);
  }

  void reply(Client& c, const sp::Writer& w) { c.out += w.bytes(); }

  bool allPresent(const std::vector<std::string>& keys) const {
    for (const auto& k : keys)
      if (!data.count(k)) return false;
    return true;
  }

  void answerWaiter(const Waiter& w, bool timedOut) {
    sp::Writer r;
    if (timedOut) {
      std::vector<std::string> missing;
      for (const auto& k : w.keys)
        if (!data.count(k)) missing.push_back(k);
      r.u8(sp::kTimeout);
      r.strs(missing);
    } else {
      r.u8(sp::kOk);
      if (w.isGet) r.str(data.at(w.keys.front()));
    }
    reply(*w.client, r);
    w.client->parked = false;
  }

  void removeWaiter(std::list<Waiter>::iterator it) {
    for (const auto& k : it->keys) {
      auto m = waitersByKey.find(k);
      if (m == waitersByKey.end()) continue;
      auto& v = m->second;
      v.erase(std::remove(v.begin(), v.end(), it), v.end());
      if (v.empty()) waitersByKey.erase(m);
    }
    waiters.erase(it);
  }

  // After key changed: wake the waiters whose keys are now all present.
  void keyChanged(const std::string& key, std::vector<Client*>& touched) {
    auto m = waitersByKey.find(key);
    if (m == waitersByKey.end()) return;
    auto candidates = m->second;  // copy: removeWaiter edits the index
    for (auto it : candidates) {
      if (!allPresent(it->keys)) continue;
      answerWaiter(*it, false);
      touched.push_back(it->client);
      removeWaiter(it);
    }
  }

  void dropClientWaiters(Client* c) {
    for (auto it = waiters.begin(); it != waiters.end();) {
      auto next = std::next(it);
      if (it->client == c) removeWaiter(it);
      it = next;
    }
  }

  // Parses and executes complete requests of c. Returns false on a protocol violation.
  bool handleInput(Client& c, std::vector<Client*>& touched) {
    std::size_t pos = 0;
    while (!c.parked && pos < c.in.size()) {
      const char* begin = c.in.data() + pos;
      sp::Reader r(begin, c.in.size() - pos);
      std::uint8_t cmd;
      if (!r.u8(cmd)) break;
      sp::Writer w;
      bool complete = true;
      switch (cmd) {
        case sp::kSet: {
          std::string k, v;
          if (!(complete = r.str(k, sp::kMaxKeyBytes) && r.str(v, sp::kMaxValueBytes))) break;
          data[k] = std::move(v);
          w.u8(sp::kOk);
          reply(c, w);
          keyChanged(k, touched);
          break;
        }
        case sp::kGet:
        case sp::kWait: {
          std::vector<std::string> keys;
          std::uint32_t timeoutMs;
          if (cmd == sp::kGet) {
            keys.resize(1);
            complete = r.str(keys[0], sp::kMaxKeyBytes);
          } else {
            complete = r.strs(keys, sp::kMaxKeyBytes);
          }
          if (!(complete = complete && r.u32(timeoutMs))) break;
          Waiter wt{&c, std::move(keys), Clock::now() + std::chrono::milliseconds(timeoutMs), cmd == sp::kGet};
          if (allPresent(wt.keys)) {
            answerWaiter(wt, false);
          } else {
            c.parked = true;
            auto it = waiters.insert(waiters.end(), std::move(wt));
            // Index each distinct key once, even if the request repeats it.
            std::vector<std::string> distinct = it->keys;
            std::sort(distinct.begin(), distinct.end());
            distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
            for (const auto& k : distinct) waitersByKey[k].push_back(it);
          }
          break;
        }
        case sp::kAdd: {
          std::string k;
          std::int64_t delta;
          if (!(complete = r.str(k, sp::kMaxKeyBytes) && r.i64(delta))) break;
          std::int64_t v = 0;
          auto it = data.find(k);
          if (it != data.end()) v = std::strtoll(it->second.c_str(), nullptr, 10);
          v += delta;
          data[k] = std::to_string(v);
          w.u8(sp::kOk);
          w.i64(v);
          reply(c, w);
          keyChanged(k, touched);
          break;
        }
        case sp::kCompareSet: {
          std::string k, expected, desired;
          if (!(complete = r.str(k, sp::kMaxKeyBytes) && r.str(expected, sp::kMaxValueBytes) &&
                           r.str(desired, sp::kMaxValueBytes)))
            break;
          auto it = data.find(k);
          bool changed = false;
          if ((it == data.end() && expected.empty()) || (it != data.end() && it->second == expected)) {
            data[k] = desired;
            changed = true;
          }
          w.u8(sp::kOk);
          w.str(data.count(k) ? data[k] : std::string());
          reply(c, w);
          if (changed) keyChanged(k, touched);
          break;
        }
        case sp::kRemove: {
          std::string k;
          if (!(complete = r.str(k, sp::kMaxKeyBytes))) break;
          w.u8(sp::kOk);
          w.i64(data.erase(k) ? 1 : 0);
          reply(c, w);
          break;
        }
        case sp::kCheck: {
          std::vector<std::string> keys;
          if (!(complete = r.strs(keys, sp::kMaxKeyBytes))) break;
          w.u8(sp::kOk);
          w.i64(allPresent(keys) ? 1 : 0);
          reply(c, w);
          break;
        }
        case sp::kPing:
          w.u8(sp::kOk);
          reply(c, w);
          break;
        default:
          return false;
      }
      if (r.tooLarge()) return false;
      if (!complete) break;
      pos += r.consumed(begin);
    }
    c.in.erase(0, pos);
    return true;
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
      c.closing = true;
      return false;
    }
    c.out.clear();
    c.outSent = 0;
    return true;
  }
};

TcpStoreServer::TcpStoreServer(const SockAddr& addr) : state_(std::make_unique<State>()) {
  listener_ = listenOn(addr, 4096, "kumi store server");
  setNonBlocking(listener_.get(), true);
  address_ = localAddress(listener_.get());
  wakeFd_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  state_->epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (state_->epfd < 0 || !wakeFd_.valid()) failErrno("kumi store server: epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener_.get();
  ::epoll_ctl(state_->epfd, EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.fd = wakeFd_.get();
  ::epoll_ctl(state_->epfd, EPOLL_CTL_ADD, wakeFd_.get(), &ev);
  KUMI_INFO("store server listening on ", address_.str());
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
  while (!stopping_.load()) {
    int timeoutMs = 1000;
    auto now = Clock::now();
    for (const auto& w : s.waiters) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(w.deadline - now).count() + 1;
      timeoutMs = static_cast<int>(std::max<long long>(0, std::min<long long>(timeoutMs, ms)));
    }
    int n = ::epoll_wait(s.epfd, events.data(), static_cast<int>(events.size()), timeoutMs);
    std::vector<Client*> touched;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wakeFd_.get()) continue;
      if (fd == listener_.get()) {
        for (;;) {
          int cfd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
              // Out of descriptors: the listener stays readable, so pause instead of spinning.
              KUMI_WARN("store server: out of file descriptors with ", s.clients.size(), " clients (raise ulimit -n)");
              std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            break;
          }
          setNoDelay(cfd);
          auto c = std::make_unique<Client>();
          c->fd = Fd(cfd);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = cfd;
          ::epoll_ctl(s.epfd, EPOLL_CTL_ADD, cfd, &ev);
          s.clients[cfd] = std::move(c);
        }
        continue;
      }
      auto it = s.clients.find(fd);
      if (it == s.clients.end()) continue;
      Client& c = *it->second;
      if (events[i].events & EPOLLIN) {
        for (;;) {
          ssize_t r = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
          if (r > 0) {
            c.in.append(buf.data(), static_cast<std::size_t>(r));
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c.closing = true;
          if (r < 0 && errno == EINTR) continue;
          break;
        }
        if (!s.handleInput(c, touched)) {
          KUMI_WARN("store server: malformed request from ", peerAddress(fd).str(), "; closing it");
          c.closing = true;
        }
      }
      if (events[i].events & (EPOLLHUP | EPOLLERR)) c.closing = true;
      touched.push_back(&c);
    }
    // Expired waiters answer with the keys still missing.
    now = Clock::now();
    for (auto it = s.waiters.begin(); it != s.waiters.end();) {
      auto next = std::next(it);
      if (it->deadline <= now) {
        s.answerWaiter(*it, true);
        touched.push_back(it->client);
        s.removeWaiter(it);
      }
      it = next;
    }
    // Flush replies; a client unparked by a reply may have more requests buffered.
    for (std::size_t i = 0; i < touched.size(); ++i) {
      Client* c = touched[i];
      if (!c->parked && !c->in.empty() && !c->closing) s.handleInput(*c, touched);
      bool drained = s.flush(*c);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (drained ? 0u : static_cast<unsigned>(EPOLLOUT));
      ev.data.fd = c->fd.get();
      ::epoll_ctl(s.epfd, EPOLL_CTL_MOD, c->fd.get(), &ev);
    }
    for (auto it = s.clients.begin(); it != s.clients.end();) {
      if (it->second->closing) {
        s.dropClientWaiters(it->second.get());
        ::epoll_ctl(s.epfd, EPOLL_CTL_DEL, it->first, nullptr);
        it = s.clients.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace kumi
