#include "transports/tcp/connection_handshake.hpp"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <list>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rate_limit.hpp"

namespace kumi::tcp {

namespace {
using Clock = std::chrono::steady_clock;

// One connection in the handshake.
struct Pending {
  Fd fd;
  std::string from;
  Clock::time_point due;
  auth::Nonce nonce{};        // ours, sent in the greeting
  std::string in;             // the initiator's bytes so far
  std::string out;            // greeting, then the answer
  std::size_t outSent = 0;
  bool answered = false;      // the answer is queued: read nothing more
  std::uint32_t status = kBadVersion;
  Hello hello{};
  bool broken = false;
};

// Handshakes in flight may use at most an eighth of this process's descriptors (several
// communicators each have an acceptor, and the data path needs the rest).
std::size_t pendingLimit() {
  rlimit lim{};
  std::size_t eighth = 128;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    eighth = static_cast<std::size_t>(lim.rlim_cur / 8);
  return std::clamp<std::size_t>(eighth, 8, Acceptor::kMaxPending);
}
}  // namespace

struct Acceptor::Impl {
  int listenFd;
  int stopFd;
  AcceptorOptions opt;
  AcceptorHooks hooks;
  std::list<Pending> pending;  // oldest first
  LogLimiter warnings;
  std::size_t maxPending = pendingLimit();

  template <class... Args>
  void warn(const Args&... args) {
    std::size_t suppressed = 0;
    if (!warnings.allow(&suppressed)) return;
    if (suppressed)
      KUMI_WARN("tcp: ", args..., " (", suppressed, " similar warnings suppressed before this one)");
    else
      KUMI_WARN("tcp: ", args...);
  }

  // Drops a connection; a set that decide() reserved for it is released.
  void discard(std::list<Pending>::iterator it) {
    if (it->answered && it->status == kAccepted) hooks.undo(it->hello);
    pending.erase(it);
  }

  // Sends what it can without blocking; false when the connection broke.
  static bool flush(Pending& p) {
    while (p.outSent < p.out.size()) {
      ssize_t n = ::send(p.fd.get(), p.out.data() + p.outSent, p.out.size() - p.outSent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        p.outSent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
    return true;
  }

  void acceptNew() {
    for (;;) {
      int cfd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          warn("out of file descriptors while accepting (raise ulimit -n)");
          // A stranger's handshake gives its descriptor back; with none to take, pause instead
          // of spinning on the readable listener.
          if (!pending.empty()) {
            discard(pending.begin());
            continue;
          }
          ::poll(nullptr, 0, 50);
        }
        return;
      }
      Pending p;
      p.fd = Fd(cfd);
      p.from = peerAddress(cfd).str();
      p.due = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(opt.handshakeSeconds));
      if (!opt.secret.empty()) p.nonce = auth::randomNonce();
      const Greeting g = makeGreeting(!opt.secret.empty(), p.nonce);
      p.out.assign(reinterpret_cast<const char*>(&g), sizeof g);
      p.broken = !flush(p);
      pending.push_back(std::move(p));
      while (pending.size() > maxPending) {
        warn("more than ", maxPending, " connections in the handshake; dropping the oldest, from ",
             pending.front().from);
        discard(pending.begin());
      }
    }
  }

  // The initiator's bytes are all there: judge them and queue the answer.
  void answer(Pending& p, const HelloProof& proof) {
    const Hello& h = p.hello;
    std::uint32_t status = checkHello(h, opt.expect);
    if (status != kBadVersion && !opt.secret.empty() && !helloProofValid(opt.secret, p.nonce, proof, h))
      status = kAuthFailed;
    if (status == kAccepted) status = hooks.decide(h, p.from);
    p.status = status;
    p.answered = true;
    if (status == kAuthFailed)
      warn("refused connection from ", p.from, " claiming rank ", h.rank, ": ", helloStatusText(status));
    else if (status != kAccepted && status != kDuplicate)
      warn("refused connection from ", p.from, " claiming rank ", h.rank, " of job '", printableJobId(h),
           "' generation ", h.generation, ": ", helloStatusText(status), " (this is rank ", opt.expect.rank, " of job '",
           opt.jobId, "' generation ", opt.generation, ")");
    const HelloReply reply{kHelloMagic, status};
    auth::Nonce theirs{};
    std::memcpy(theirs.data(), proof.nonce, theirs.size());
    // A refusal for a wrong proof carries no proof of ours: the caller has not earned one.
    const ReplyProof rp = status == kAuthFailed ? ReplyProof{} : makeReplyProof(opt.secret, p.nonce, theirs, h, reply);
    p.out.append(reinterpret_cast<const char*>(&reply), sizeof reply);
    p.out.append(reinterpret_cast<const char*>(&rp), sizeof rp);
  }

  // Reads what the initiator sent; false when the connection is to be dropped.
  bool receive(Pending& p) {
    char buf[kInitiatorBytes];
    while (p.in.size() < kInitiatorBytes) {
      ssize_t n = ::recv(p.fd.get(), buf, kInitiatorBytes - p.in.size(), MSG_DONTWAIT);
      if (n > 0) {
        p.in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;  // closed or failed before its handshake was complete
    }
    HelloProof proof{};
    switch (scanInitiator(p.in.data(), p.in.size(), &p.hello, &proof)) {
      case InitiatorBytes::kNeedMore:
        return true;
      case InitiatorBytes::kNotKumi:
        warn("refused connection from ", p.from, ": not a kumi handshake");
        return false;
      case InitiatorBytes::kComplete:
        answer(p, proof);
        return true;
    }
    return false;
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<std::list<Pending>::iterator> owners;
    for (;;) {
      const auto now = Clock::now();
      // Out of time: silent or slow strangers, and peers that never read their answer.
      for (auto it = pending.begin(); it != pending.end();) {
        auto next = std::next(it);
        if (it->broken || it->due <= now) {
          if (!it->broken) warn("refused connection from ", it->from, ": no handshake within ", opt.handshakeSeconds, " s");
          discard(it);
        }
        it = next;
      }
      fds.assign({{listenFd, POLLIN, 0}, {stopFd, POLLIN, 0}});
      owners.clear();
      int timeoutMs = -1;
      for (auto it = pending.begin(); it != pending.end(); ++it) {
        const short events = static_cast<short>((it->answered ? 0 : POLLIN) | (it->outSent < it->out.size() ? POLLOUT : 0));
        fds.push_back({it->fd.get(), events, 0});
        owners.push_back(it);
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->due - now).count() + 1;
        timeoutMs = static_cast<int>(timeoutMs < 0 ? std::max<long long>(left, 0) : std::clamp<long long>(left, 0, timeoutMs));
      }
      int rc = ::poll(fds.data(), fds.size(), timeoutMs);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0 || (fds[1].revents & POLLIN)) return;
      for (std::size_t i = 0; i < owners.size(); ++i) {
        auto it = owners[i];
        const short rev = fds[i + 2].revents;
        if (!rev) continue;
        if ((rev & (POLLIN | POLLHUP | POLLERR)) && !it->answered && !receive(*it)) {
          discard(it);
          continue;
        }
        if (!flush(*it)) {
          discard(it);
          continue;
        }
        if (it->answered && it->outSent == it->out.size()) {
          // The answer is out: an accepted socket joins its peer's set, any other is closed.
          if (it->status == kAccepted) hooks.accepted(it->hello, std::move(it->fd));
          pending.erase(it);
        }
      }
      if (fds[0].revents & POLLIN) acceptNew();
    }
  }
};

Acceptor::Acceptor(int listenFd, int stopFd, AcceptorOptions options, AcceptorHooks hooks)
    : impl_(std::make_unique<Impl>(Impl{listenFd, stopFd, std::move(options), std::move(hooks), {}, LogLimiter{},
                                        pendingLimit()})) {
  setNonBlocking(listenFd, true);
}

Acceptor::~Acceptor() {
  // Sets reserved for connections still in the handshake are released.
  while (!impl_->pending.empty()) impl_->discard(impl_->pending.begin());
}

void Acceptor::run() { impl_->run(); }

std::uint32_t initiateHandshake(int fd, const Hello& hello, const std::string& secret, const Deadline& deadline,
                                const std::string& who) {
  const std::string ctx = cat("handshake with ", who);
  Greeting g;
  readFull(fd, &g, sizeof g, deadline, ctx);
  const GreetingCheck check = checkGreeting(g, !secret.empty());
  if (check != GreetingCheck::kOk) fail(kumiRemoteError, who, " ", describe(check));
  auth::Nonce acceptorNonce, ours{};
  std::memcpy(acceptorNonce.data(), g.nonce, acceptorNonce.size());
  if (!secret.empty()) ours = auth::randomNonce();
  const HelloProof proof = makeHelloProof(secret, acceptorNonce, ours, hello);
  char out[kInitiatorBytes];
  std::memcpy(out, &hello, sizeof hello);
  std::memcpy(out + sizeof hello, &proof, sizeof proof);
  writeFull(fd, out, sizeof out, deadline, ctx);
  HelloReply reply;
  ReplyProof replyProof;
  readFull(fd, &reply, sizeof reply, deadline, ctx);
  readFull(fd, &replyProof, sizeof replyProof, deadline, ctx);
  if (reply.magic != kHelloMagic) fail(kumiRemoteError, who, " answered the handshake with garbage");
  // What this side acts on (accepted, or wait for the peer's own set) must come from a peer that
  // knows the secret; a refusal ends in an error either way.
  if (!secret.empty() && (reply.status == kAccepted || reply.status == kDuplicate) &&
      !replyProofValid(secret, acceptorNonce, ours, hello, reply, replyProof))
    fail(kumiRemoteError, who, " could not prove that it knows KUMI_SECRET: the secrets differ, or it is not a rank "
                               "of this job");
  return reply.status;
}

}  // namespace kumi::tcp
