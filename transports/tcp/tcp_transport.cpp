#include "transports/tcp/tcp_transport.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "core/crc32c.hpp"
#include "core/strings.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "rendezvous/bootstrap.hpp"
#include "transports/tcp/connection_handshake.hpp"
#include "transports/tcp/handshake.hpp"

namespace kumi {
using namespace tcp;

namespace {

// Messages at least this large are striped over all sockets of a peer.
constexpr std::size_t kStripeMinBytes = 256 * 1024;

struct Part {
  Request* req;
  char* data;
  std::size_t bytes;
  std::size_t done = 0;
  MessageHeader header;  // sent as is; for a receive, overwritten by what arrives
  std::size_t headerDone = 0;
  std::uint32_t sequence = 0;  // the message's number on this peer and direction
  CallStamp expect;            // for a receive: the stamp the part must carry
};

struct Socket {
  Fd fd;
  int peer = -1;
  bool readable = true;  // edge-triggered readiness, cleared on EAGAIN
  bool writable = true;
  std::deque<Part> sendq;
  std::deque<Part> recvq;
};

enum class PeerState { kNone, kConnecting, kIncoming, kEstablished };

struct Peer {
  PeerState state = PeerState::kNone;
  std::atomic<bool> established{false};
  std::vector<std::unique_ptr<Socket>> sockets;
  std::string where;  // "host:port" for messages
  // Incoming set being assembled by the acceptor.
  std::uint64_t incomingNonce = 0;
  std::uint16_t incomingCount = 0;
  std::vector<Fd> incomingFds;
  std::uint32_t sendSeq = 0;
  std::uint32_t recvSeq = 0;
};

}  // namespace

struct TcpTransport::Impl {
  TcpOptions opt;
  std::shared_ptr<Store> store;
  Fd listener;
  SockAddr listenAddr;
  Fd epfd;
  Fd wakeFd;
  Fd acceptStopFd;
  std::thread acceptor;
  std::mutex mutex;  // guards peer state changes between the acceptor and the caller
  std::condition_variable changed;
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<std::string> known;  // peers' addresses learnt at start-up (learnAddresses), by rank
  std::vector<Socket*> active;  // sockets of established peers; owned by the progress thread
  std::atomic<bool> activeDirty{false};  // a peer was installed: rebuild `active`
  std::uint64_t jobHash = 0, commHash = 0;
  bool isShutdown = false;
  std::atomic<bool> interrupted{false};  // interrupt(): abort whatever blocks, connects included
  CallStamp stamp;                       // of the call whose parts are being posted
  std::uint32_t partsReceived = 0;       // for WireChecks::corruptEvery

  std::string peerName(int p) {
    std::string w;
    {
      std::lock_guard<std::mutex> lock(mutex);  // the acceptor thread may be writing it
      w = peers[p]->where;
    }
    return w.empty() ? cat("rank ", p) : cat("rank ", p, " (", w, ")");
  }

  Hello makeHello(std::uint16_t index, std::uint16_t count, std::uint64_t nonce) const {
    Hello h{};
    h.magic = kHelloMagic;
    h.version = kProtocolVersion;
    h.socketIndex = index;
    h.socketCount = count;
    h.rank = static_cast<std::uint32_t>(opt.rank);
    h.worldSize = static_cast<std::uint32_t>(opt.worldSize);
    h.generation = static_cast<std::uint32_t>(opt.generation);
    h.setNonce = nonce;
    std::strncpy(h.jobId, opt.jobId.c_str(), sizeof h.jobId - 1);
    h.jobHash = jobHash;
    h.commHash = commHash;
    return h;
  }

  // Makes fd part of the data path: non-blocking, no Nagle, big buffers, in epoll.
  std::unique_ptr<Socket> adopt(Fd fd, int peer) {
    auto s = std::make_unique<Socket>();
    setNonBlocking(fd.get(), true);
    setNoDelay(fd.get());
    setHeartbeat(fd.get(), opt.heartbeatSeconds);
    setBufferSizes(fd.get(), opt.bufferBytes);
    s->fd = std::move(fd);
    s->peer = peer;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.ptr = s.get();
    ::epoll_ctl(epfd.get(), EPOLL_CTL_ADD, s->fd.get(), &ev);
    return s;
  }

  // Caller holds mutex.
  void install(int p, std::vector<Fd> fds) {
    Peer& peer = *peers[p];
    for (auto& fd : fds) peer.sockets.push_back(adopt(std::move(fd), p));
    activeDirty.store(true, std::memory_order_release);
    peer.state = PeerState::kEstablished;
    peer.established.store(true, std::memory_order_release);
    changed.notify_all();
    KUMI_TRACE("tcp: connected to rank ", p, " (", peer.where, ") with ", peer.sockets.size(), " socket(s)");  // mutex held
  }

  // ---- accepting side ----
  // The acceptor (connection_handshake.cpp) greets, authenticates and validates every incoming
  // connection without ever blocking on one; these hooks decide what a valid Hello means for the
  // pair's connection state.
  void acceptLoop() {
    tcp::AcceptorOptions ao;
    ao.secret = opt.secret;
    ao.handshakeSeconds = opt.handshakeSeconds;
    ao.expect.jobHash = jobHash;
    ao.expect.commHash = commHash;
    ao.expect.generation = static_cast<std::uint32_t>(opt.generation);
    ao.expect.worldSize = static_cast<std::uint32_t>(opt.worldSize);
    ao.expect.rank = static_cast<std::uint32_t>(opt.rank);
    ao.jobId = opt.jobId;
    ao.generation = opt.generation;
    tcp::AcceptorHooks hooks{[this](const Hello& h, const std::string& from) { return decideIncoming(h, from); },
                             [this](const Hello& h) { undoIncoming(h); },
                             [this](const Hello& h, Fd fd) { acceptIncoming(h, std::move(fd)); }};
    tcp::Acceptor(listener.get(), acceptStopFd.get(), std::move(ao), std::move(hooks)).run();
  }

  // A valid Hello from rank h.rank: whether its socket joins a set (kAccepted), or why not.
  std::uint32_t decideIncoming(const Hello& h, const std::string& from) {
    const int p = static_cast<int>(h.rank);
    std::lock_guard<std::mutex> lock(mutex);
    Peer& peer = *peers[p];
    if (h.socketIndex == 0) {
      bool oursWins = peer.state == PeerState::kConnecting && opt.rank < p;
      if (peer.state == PeerState::kEstablished || peer.state == PeerState::kIncoming || oursWins) return kDuplicate;
      peer.state = PeerState::kIncoming;
      peer.incomingNonce = h.setNonce;
      peer.incomingCount = h.socketCount;
      peer.incomingFds.clear();
      peer.where = from;
      return kAccepted;
    }
    // Later sockets of the set arrive in index order: the initiator opens the next one only
    // after the previous one was answered.
    if (peer.state != PeerState::kIncoming || peer.incomingNonce != h.setNonce || peer.incomingCount != h.socketCount ||
        peer.incomingFds.size() != h.socketIndex)
      return kUnknownSet;
    return kAccepted;
  }

  // The acceptance of a set's first socket could not be delivered: the pair may connect afresh.
  void undoIncoming(const Hello& h) {
    if (h.socketIndex != 0) return;
    std::lock_guard<std::mutex> lock(mutex);
    Peer& peer = *peers[h.rank];
    if (peer.state == PeerState::kIncoming && peer.incomingNonce == h.setNonce) peer.state = PeerState::kNone;
  }

  void acceptIncoming(const Hello& h, Fd fd) {
    std::lock_guard<std::mutex> lock(mutex);
    Peer& peer = *peers[h.rank];
    if (peer.state != PeerState::kIncoming || peer.incomingNonce != h.setNonce) return;  // superseded meanwhile
    peer.incomingFds.push_back(std::move(fd));
    if (peer.incomingFds.size() == h.socketCount) {
      install(static_cast<int>(h.rank), std::exchange(peer.incomingFds, {}));
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wakeFd.get(), &one, sizeof one);
    }
  }

  // ---- initiating side ----
  struct PeerAddress {
    std::string text;  // host:port as published
    std::vector<SockAddr> addrs;
  };

  // Connects to a peer that listened when the job formed. If it keeps refusing, it probably
  // failed: between one-second windows of retries, a failure notice in the store ends the wait at
  // once with that story, and so does a store that is gone too (its host failed with the job),
  // instead of waiting for `gone`.
  Fd connectOrLearnWhy(int p, PeerAddress& where, const Deadline& gone) {
    const std::string what = cat("connect to ", peerName(p), " (gone? it listened when the job formed)");
    // The first window is short: a peer that refuses at once has probably failed, and the store
    // (whose host may be about to leave) has the story now.
    for (double window = 0.25;; window = 1) {
      std::string lastError;
      try {
        return connectWithRetry(where.addrs, gone.earlier(Deadline::after(window)), what, &interrupted);
      } catch (const Error& e) {
        if (e.code() == kumiAborted || gone.expired()) throw;
        lastError = e.what();
      }
      std::string notice;
      try {
        notice = readFailureNotice(*store);
        // A pod replaced while the job formed (same name, new address) publishes its new
        // address under the same rank: follow it.
        if (notice.empty()) {
          PeerAddress now = lookUp(p, Deadline::after(1), true);
          if (now.text != where.text) {
            KUMI_INFO("rank ", opt.rank, ": ", peerName(p), " moved from ", where.text, " to ", now.text,
                      " (restarted while the job formed)");
            where = std::move(now);
            setWhere(p, where.text);
          }
        }
      } catch (const Error& e) {
        failPeerLost(p, "rank ", opt.rank, ": ", lastError, "; and the rendezvous store is gone too (", e.what(),
                     "): ", peerName(p), " failed or left");
      }
      if (!notice.empty()) failPeerFailed(p, notice);
    }
  }

  // The address learnt at start-up, else (or when `fromStore`) the one published in the store.
  PeerAddress lookUp(int p, const Deadline& deadline, bool fromStore = false) {
    PeerAddress a;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!fromStore && static_cast<std::size_t>(p) < known.size()) a.text = known[static_cast<std::size_t>(p)];
    }
    if (a.text.empty()) {
      std::string published = store->get(cat("tcp/", p), std::chrono::milliseconds(std::max(1, deadline.msLeft())));
      a.text = published.substr(0, published.find('|'));
    }
    auto [host, port] = splitHostPort(a.text, "peer address");
    a.addrs = resolve(host, port, "peer address");
    return a;
  }

  // The peer's address from now on: for messages, and for the next connect (a moved pod's).
  void setWhere(int p, const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex);
    peers[p]->where = text;
    if (static_cast<std::size_t>(p) < known.size()) known[static_cast<std::size_t>(p)] = text;
  }

  // Returns true if this side's connection set was accepted; false if the pair resolved to the
  // peer's set (then wait for it).
  bool initiate(int p, const Deadline& deadline) {
    PeerAddress where = lookUp(p, deadline);
    setWhere(p, where.text);
    std::uint64_t nonce = std::random_device{}() * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(::getpid());
    const int k = opt.socketsPerPeer;
    std::vector<Fd> fds;
    for (int i = 0; i < k; ++i) {
      // The peer listened before it published its address: if it refuses for long, it is gone.
      Fd fd = connectOrLearnWhy(p, where, deadline.earlier(Deadline::after(15)));
      Hello h = makeHello(static_cast<std::uint16_t>(i), static_cast<std::uint16_t>(k), nonce);
      // The peer's acceptor answers at once; a stalled one must not hold us for the whole deadline.
      const Deadline shake = deadline.earlier(Deadline::after(opt.handshakeSeconds));
      const std::uint32_t status = tcp::initiateHandshake(fd.get(), h, opt.secret, shake, peerName(p));
      if (status == kDuplicate && i == 0) return false;
      if (status != kAccepted)
        fail(kumiRemoteError, peerName(p), " refused the connection: ", helloStatusText(status),
             " (this is rank ", opt.rank, " of job '", opt.jobId, "' generation ", opt.generation, ")");
      fds.push_back(std::move(fd));
    }
    std::lock_guard<std::mutex> lock(mutex);
    install(p, std::move(fds));
    return true;
  }

  void connectOne(int p, const Deadline& deadline) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      Peer& peer = *peers[p];
      if (peer.state == PeerState::kEstablished) return;
      if (peer.state == PeerState::kNone) peer.state = PeerState::kConnecting;
      else if (peer.state == PeerState::kIncoming) goto wait;
    }
    try {
      if (initiate(p, deadline)) return;
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (peers[p]->state == PeerState::kConnecting) peers[p]->state = PeerState::kNone;
      throw;
    }
  wait : {
    // The peer connects to us. If it fails first, nothing arrives: look for a failure notice in
    // the store once a second, as a blocked collective does, instead of waiting for the deadline.
    bool ok = false;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        ok = changed.wait_until(lock, std::min(deadline.when(), Deadline::after(1).when()),
                                [&] { return peers[p]->state == PeerState::kEstablished || interrupted.load(); });
      }  // peerName() takes the mutex itself
      if (ok || interrupted.load() || deadline.expired()) break;
      std::string notice;
      try {
        notice = readFailureNotice(*store);
      } catch (const Error&) {
        // A lost store is no verdict on this peer; the deadline still is.
      }
      if (!notice.empty()) failPeerFailed(p, notice);
    }
    if (interrupted.load()) fail(kumiAborted, "rank ", opt.rank, ": connecting to ", peerName(p), " was interrupted");
    if (!ok)
      fail(kumiTimeout, "rank ", opt.rank, ": connection with ", peerName(p),
           " was not completed before the deadline (the peer is not taking part?)");
  }
  }

  // ---- data path ----
  [[noreturn]] void lost(const Socket& s, const char* how) {
    const int e = errno;
    if (e == ETIMEDOUT)
      failPeerLost(s.peer, "rank ", opt.rank, ": connection to ", peerName(s.peer), " ", how, ": no heartbeat answered for ",
                   4 * opt.heartbeatSeconds, " s: its host is down or cut off from this one");
    failPeerLost(s.peer, "rank ", opt.rank, ": connection to ", peerName(s.peer), " ", how,
         ": the peer exited, crashed or aborted");
  }

  bool pumpSend(Socket& s, std::vector<Request*>& completed) {
    bool moved = false;
    while (s.writable && !s.sendq.empty()) {
      Part& part = s.sendq.front();
      iovec iov[2];
      int n = 0;
      if (part.headerDone < sizeof(MessageHeader))
        iov[n++] = {reinterpret_cast<char*>(&part.header) + part.headerDone, sizeof(MessageHeader) - part.headerDone};
      if (part.done < part.bytes) iov[n++] = {part.data + part.done, part.bytes - part.done};
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<std::size_t>(n);
      ssize_t w = ::sendmsg(s.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          s.writable = false;
          break;
        }
        lost(s, "failed while sending");
      }
      moved = true;
      auto written = static_cast<std::size_t>(w);
      std::size_t h = std::min(written, sizeof(MessageHeader) - part.headerDone);
      part.headerDone += h;
      part.done += written - h;
      if (part.headerDone == sizeof(MessageHeader) && part.done == part.bytes) {
        if (--part.req->partsLeft == 0) completed.push_back(part.req);
        s.sendq.pop_front();
      }
    }
    return moved;
  }

  bool pumpRecv(Socket& s, std::vector<Request*>& completed) {
    bool moved = false;
    while (s.readable && !s.recvq.empty()) {
      Part& part = s.recvq.front();
      ssize_t r;
      if (part.headerDone < sizeof(MessageHeader)) {
        r = ::recv(s.fd.get(), reinterpret_cast<char*>(&part.header) + part.headerDone,
                   sizeof(MessageHeader) - part.headerDone, MSG_DONTWAIT);
      } else {
        r = ::recv(s.fd.get(), part.data + part.done, part.bytes - part.done, MSG_DONTWAIT);
      }
      if (r == 0) {
        errno = 0;  // an orderly close, whatever errno held before
        lost(s, "was closed");
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          s.readable = false;
          break;
        }
        lost(s, "failed while receiving");
      }
      moved = true;
      if (part.headerDone < sizeof(MessageHeader)) {
        part.headerDone += static_cast<std::size_t>(r);
        if (part.headerDone == sizeof(MessageHeader)) {
          const auto& h = part.header;
          if (h.magic == kFailureMagic) readStory(s, h.bytes);
          if (h.magic != kHelloMagic)
            fail(kumiRemoteError, "rank ", opt.rank, ": corrupt stream from ", peerName(s.peer));
          if (CallStamp{h.stampLo, h.stampHi} != part.expect)
            throw CallMismatch(s.peer, part.expect, CallStamp{h.stampLo, h.stampHi});
          if (h.sequence != part.sequence)
            fail(kumiRemoteError, "rank ", opt.rank, ": ", peerName(s.peer), " sent message #", h.sequence,
                 " where #", part.sequence, " was expected: the ranks' schedules disagree");
          if (h.bytes != part.bytes)
            fail(kumiRemoteError, "rank ", opt.rank, ": ", peerName(s.peer), " sent a message part of ", h.bytes,
                 " bytes where ", part.bytes,
                 " were expected: the ranks called different collectives or disagree on count or data type");
        }
      } else {
        part.done += static_cast<std::size_t>(r);
      }
      if (part.headerDone == sizeof(MessageHeader) && part.done == part.bytes) {
        verify(s, part);
        if (--part.req->partsLeft == 0) completed.push_back(part.req);
        s.recvq.pop_front();
      }
    }
    return moved;
  }

  // The peer's last frame: its story follows the header (sent in one piece, so normally here
  // already; waits at most 100 ms for the rest).
  [[noreturn]] void readStory(const Socket& s, std::uint64_t bytes) {
    std::string story(static_cast<std::size_t>(std::min(bytes, kMaxStoryBytes)), '\0');
    std::size_t got = 0;
    const Deadline until = Deadline::after(0.1);
    while (got < story.size() && !until.expired()) {
      ssize_t r = ::recv(s.fd.get(), story.data() + got, story.size() - got, MSG_DONTWAIT);
      if (r > 0) got += static_cast<std::size_t>(r);
      else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
      else {
        pollfd pfd{s.fd.get(), POLLIN, 0};
        ::poll(&pfd, 1, std::max(1, until.msLeft()));
      }
    }
    story.resize(got);
    for (char& c : story)
      if (static_cast<unsigned char>(c) < 0x20 && c != '\n') c = '?';  // a log line, whoever wrote it
    if (story.empty()) lost(s, "was closed");
    failPeerFailed(s.peer, story);
  }

  // A received part, whole: its checksum (when the sender sent one) must match its bytes.
  void verify(const Socket& s, const Part& part) {
    injectCorruption(opt.checks, partsReceived, part.data, part.bytes);
    const MessageHeader& h = part.header;
    if (!(h.flags & kHasChecksum)) return;
    const std::uint32_t got = crc32c(part.data, part.bytes);
    if (got != h.checksum)
      failLink(s.peer, "rank ", opt.rank, ": data from ", peerName(s.peer), " arrived corrupted over tcp (a ",
           part.bytes, "-byte part of message #", part.sequence, ": CRC32C sent ", hex32(h.checksum), ", received ",
           hex32(got), "): the network path between these two ranks damages data");
  }

  // Splits a message into parts on the peer's sockets; both sides compute the same split.
  template <class Queue>
  void enqueue(int p, char* data, std::size_t bytes, Request* req, std::uint32_t& seq, Queue queueOf) {
    Peer& peer = *peers[p];
    if (!peer.established.load(std::memory_order_acquire))
      fail(kumiInternalError, "rank ", opt.rank, ": message posted to ", peerName(p), " before connecting");
    const std::size_t k = peer.sockets.size();
    const std::uint32_t s = seq++;
    const bool sending = queueOf == &Socket::sendq;
    auto add = [&](Socket& sock, char* ptr, std::size_t n) {
      Part part{req, ptr, n};
      part.header = MessageHeader{kHelloMagic, s, n, stamp.lo, stamp.hi, 0, 0};
      if (sending && opt.checks.checksum) {
        part.header.checksum = crc32c(ptr, n);
        part.header.flags |= kHasChecksum;
      }
      part.sequence = s;
      part.expect = stamp;
      (sock.*queueOf).push_back(part);
    };
    if (k == 1 || bytes < kStripeMinBytes) {
      req->partsLeft = 1;
      add(*peer.sockets[s % k], data, bytes);
      return;
    }
    req->partsLeft = static_cast<int>(k);
    std::size_t base = bytes / k, off = 0;
    for (std::size_t i = 0; i < k; ++i) {
      std::size_t n = base + (i < bytes % k ? 1 : 0);
      add(*peer.sockets[i], data + off, n);
      off += n;
    }
  }
};

TcpTransport::TcpTransport(const TcpOptions& options, std::shared_ptr<Store> store)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = options;
  m.opt.socketsPerPeer = std::max(1, options.socketsPerPeer);
  m.store = std::move(store);
  m.jobHash = fnv1a(options.jobId);
  m.commHash = fnv1a(options.commId);
  for (int i = 0; i < options.worldSize; ++i) m.peers.push_back(std::make_unique<Peer>());
  m.epfd = Fd(::epoll_create1(EPOLL_CLOEXEC));
  m.wakeFd = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  m.acceptStopFd = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!m.epfd.valid() || !m.wakeFd.valid() || !m.acceptStopFd.valid()) failErrno("tcp transport: epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the wake-up eventfd
  ::epoll_ctl(m.epfd.get(), EPOLL_CTL_ADD, m.wakeFd.get(), &ev);
  m.listener = listenOn(options.listenAddress, 1024, "tcp transport");
  m.listenAddr = localAddress(m.listener.get());
  m.store->set(cat("tcp/", options.rank), cat(m.listenAddr.str(), '|', options.rank));
  m.acceptor = std::thread([&m] { m.acceptLoop(); });
  KUMI_INFO("tcp: rank ", options.rank, " listening on ", m.listenAddr.str(), ", ", m.opt.socketsPerPeer,
            " socket(s) per peer");
}

std::string TcpTransport::address() const { return impl_->listenAddr.str(); }

void TcpTransport::learnAddresses(std::vector<std::string> byRank) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->known = std::move(byRank);
}

TcpTransport::~TcpTransport() { shutdown(); }

void TcpTransport::connect(const std::vector<int>& peers, const Deadline& deadline) {
  for (int p : peers) {
    if (p == impl_->opt.rank || impl_->peers[p]->established.load(std::memory_order_acquire)) continue;
    impl_->connectOne(p, deadline);
  }
}

void TcpTransport::setCallStamp(const CallStamp& stamp) { impl_->stamp = stamp; }

void TcpTransport::postSend(int peer, const void* data, std::size_t bytes, Request* req) {
  impl_->enqueue(peer, const_cast<char*>(static_cast<const char*>(data)), bytes, req, impl_->peers[peer]->sendSeq,
                 &Socket::sendq);
}

void TcpTransport::postRecv(int peer, void* data, std::size_t bytes, Request* req) {
  impl_->enqueue(peer, static_cast<char*>(data), bytes, req, impl_->peers[peer]->recvSeq, &Socket::recvq);
}

bool TcpTransport::progress(std::vector<Request*>& completed) {
  if (impl_->activeDirty.exchange(false, std::memory_order_acq_rel)) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->active.clear();
    for (auto& p : impl_->peers)
      if (p->established.load(std::memory_order_acquire))
        for (auto& s : p->sockets) impl_->active.push_back(s.get());
  }
  bool moved = false;
  for (Socket* s : impl_->active) {
    if (!s->sendq.empty()) moved |= impl_->pumpSend(*s, completed);
    if (!s->recvq.empty()) moved |= impl_->pumpRecv(*s, completed);
  }
  return moved;
}

void TcpTransport::waitForEvents(int timeoutMs) {
  epoll_event events[64];
  int n = ::epoll_wait(impl_->epfd.get(), events, 64, timeoutMs);
  for (int i = 0; i < n; ++i) {
    auto* s = static_cast<Socket*>(events[i].data.ptr);
    if (s == nullptr) {
      std::uint64_t v;
      [[maybe_unused]] auto r = ::read(impl_->wakeFd.get(), &v, sizeof v);
      continue;
    }
    auto e = events[i].events;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->readable = true;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s->writable = true;
  }
}

int TcpTransport::eventFd() const { return impl_->epfd.get(); }

bool TcpTransport::cancelRecv(int peer, Request* req) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& s : impl_->peers[static_cast<std::size_t>(peer)]->sockets) {
    auto it = std::find_if(s->recvq.begin(), s->recvq.end(),
                           [&](const Part& p) { return p.req == req && p.headerDone == 0; });
    if (it == s->recvq.end()) continue;
    s->recvq.erase(it);
    --req->partsLeft;
    return true;
  }
  return false;
}

void TcpTransport::interrupt() {
  impl_->interrupted.store(true);
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->changed.notify_all();
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->wakeFd.get(), &one, sizeof one);
}

void TcpTransport::cancelAll() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& p : impl_->peers)
    for (auto& s : p->sockets) {
      s->sendq.clear();
      s->recvq.clear();
    }
}

void TcpTransport::publishFailure(const std::string& story) {
  Impl& m = *impl_;
  if (m.isShutdown) return;
  const std::string text = story.substr(0, kMaxStoryBytes);
  MessageHeader h{kFailureMagic, 0, text.size(), 0, 0, 0, 0};
  std::lock_guard<std::mutex> lock(m.mutex);
  for (auto& p : m.peers) {
    if (!p->established.load()) continue;
    for (auto& s : p->sockets) {
      // Only between messages: a frame inside a half-sent part would be read as its data.
      if (!s->sendq.empty() && (s->sendq.front().headerDone > 0 || s->sendq.front().done > 0)) continue;
      iovec iov[2] = {{&h, sizeof h}, {const_cast<char*>(text.data()), text.size()}};
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = 2;
      [[maybe_unused]] ssize_t n = ::sendmsg(s->fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  }
}

void TcpTransport::shutdown() {
  Impl& m = *impl_;
  if (m.isShutdown) return;
  m.isShutdown = true;
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(m.acceptStopFd.get(), &one, sizeof one);
  if (m.acceptor.joinable()) m.acceptor.join();
  std::lock_guard<std::mutex> lock(m.mutex);
  for (auto& p : m.peers)
    for (auto& s : p->sockets) ::shutdown(s->fd.get(), SHUT_RDWR);
  m.active.clear();
  for (auto& p : m.peers) {
    p->established.store(false);
    p->sockets.clear();
  }
  m.listener.reset();
}

}  // namespace kumi
