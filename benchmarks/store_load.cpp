// kumi-store-load: N ranks (default 4096) join through one rendezvous store at once, as a real
// job's ranks do, and the time to complete the join and the store's memory are reported.
//
// The store is a kumi-store child process on 127.0.0.1 (as in production, a process of its own,
// so that its peak RSS can be read from /proc/<pid>/status), or an existing one (--store). A few
// threads drive all N connections, non-blocking under epoll, with the library's own handshake,
// request encoding and reply parsing: one thread per client would measure the loader's thread
// scheduling, not the store. Every rank r does what bootstrap does:
//   handshake; compare-set world_size; compare-set claim/r; set tcp/r (a 40-byte address);
//   add tcp/arrived (the one that reaches N sets tcp/all); wait tcp/all; get both ring
//   neighbours' tcp/ keys; add ready/arrived (N sets ready/all); wait ready/all.
// Every reply is checked (neighbours' values, every count 1..N seen exactly once); the exit
// status is 0 only when every rank completed the join with correct values.
//
//   kumi-store-load [-n N] [--threads T] [--burst B] [--store HOST:PORT] [--timeout S] [--json FILE]
// KUMI_SECRET / KUMI_SECRET_FILE: the clients prove it, and the child store requires it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/secret.hpp"
#include "core/socket.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_reply.hpp"

extern char** environ;

namespace {
namespace sp = kumi::store_protocol;
using Clock = std::chrono::steady_clock;

struct Options {
  int clients = 4096;
  int threads = 4;
  int burst = 16;           // connects per thread between turns of its loop; 0: all at once
  std::string store;        // empty: start a kumi-store child
  std::string storeBinary;  // default: kumi-store beside this program
  double timeoutS = 120;
  std::string json;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "kumi-store-load: %s\n", msg.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "-n" || a == "--clients") o.clients = std::atoi(val().c_str());
    else if (a == "--threads") o.threads = std::atoi(val().c_str());
    else if (a == "--burst") o.burst = std::atoi(val().c_str());
    else if (a == "--store") o.store = val();
    else if (a == "--store-binary") o.storeBinary = val();
    else if (a == "--timeout") o.timeoutS = std::atof(val().c_str());
    else if (a == "--json") o.json = val();
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: kumi-store-load [-n N (4096)] [--threads T (4)] [--burst B (16)] [--store HOST:PORT]\n"
          "                       [--store-binary PATH] [--timeout SECONDS (120)] [--json FILE]\n"
          "--burst: connections each thread opens between serving its others (0: all before any).\n"
          "N ranks join through one store at once (set, add, wait, get); prints the join time and the\n"
          "store's peak memory. Without --store, starts kumi-store on 127.0.0.1. KUMI_SECRET applies.\n");
      std::exit(0);
    } else die("unknown argument '" + a + "' (try --help)");
  }
  if (o.clients < 2) die("-n must be at least 2");
  if (o.threads < 1) die("--threads must be at least 1");
  if (o.burst < 0) die("--burst must be 0 or more");
  return o;
}

// N connections here (and N in the store) need more descriptors than the usual soft limit of 1024.
void raiseFdLimit(rlim_t need) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need)
    die("needs " + std::to_string(need) + " file descriptors, the hard limit is " + std::to_string(lim.rlim_max) +
        ": raise it (ulimit -n " + std::to_string(need) + ", or nofile in /etc/security/limits.conf)");
}

// "VmHWM" or "VmRSS" of a process, in KiB (0 when unreadable).
long memoryKb(pid_t pid, const char* field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  const std::string prefix = std::string(field) + ":";
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(prefix, 0) == 0) return std::atol(line.c_str() + prefix.size());
  return 0;
}

// The store as a process of its own; stopped (SIGTERM, then reaped) when this goes away.
class StoreProcess {
 public:
  explicit StoreProcess(const std::string& binary) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) die("pipe: " + std::string(std::strerror(errno)));
    kumi::Fd readEnd(p[0]), writeEnd(p[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, writeEnd.get(), STDOUT_FILENO);
    std::string listenArg = "127.0.0.1:0";
    char* args[] = {const_cast<char*>(binary.c_str()), const_cast<char*>("--listen"), listenArg.data(), nullptr};
    const int rc = ::posix_spawn(&pid_, binary.c_str(), &fa, nullptr, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) die("cannot start " + binary + ": " + std::strerror(rc) + " (build kumi-store, or --store-binary)");
    writeEnd.reset();
    // kumi-store prints "kumi-store: serving on HOST:PORT" once it listens.
    std::string text;
    const auto deadline = kumi::Deadline::after(20);
    char buf[512];
    while (text.find("serving on ") == std::string::npos || text.find('\n', text.find("serving on ")) == std::string::npos) {
      pollfd pfd{readEnd.get(), POLLIN, 0};
      if (deadline.expired() || ::poll(&pfd, 1, deadline.msLeft()) <= 0) die("kumi-store did not start within 20 s");
      const ssize_t n = ::read(readEnd.get(), buf, sizeof buf);
      if (n <= 0) die("kumi-store exited before serving:\n" + text);
      text.append(buf, static_cast<std::size_t>(n));
    }
    const auto at = text.find("serving on ") + 11;
    address_ = text.substr(at, text.find_first_of(" \n", at) - at);
    output_ = std::move(readEnd);  // it prints nothing more; kept open so it never gets SIGPIPE
  }
  ~StoreProcess() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  StoreProcess(const StoreProcess&) = delete;
  StoreProcess& operator=(const StoreProcess&) = delete;
  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  kumi::Fd output_;
};

// What every rank reads back must be what the others wrote: values follow from the rank.
std::string addressOf(int r) {
  char v[64];
  std::snprintf(v, sizeof v, "10.%d.%d.%d:%05d#rank%07d", (r >> 16) & 255, (r >> 8) & 255, r & 255, 20000 + r % 40000,
                r);
  std::string s(v);
  s.resize(40, '.');  // the size of a real rank's "host:port" listing, padded
  return s;
}
std::string claimToken(int r) { return "loader-" + std::to_string(::getpid()) + "-" + std::to_string(r); }

// The join, step by step. kSetAll / kSetReady are taken only by the rank whose add reached N.
enum Step { kWorldSize, kClaim, kSetAddress, kAddArrived, kSetAll, kWaitAll, kGetNext, kGetPrev, kAddReady,
            kSetReady, kWaitReady, kDone };

struct Shared {
  int n = 0;
  std::string prefix;  // keeps runs against one external store apart
  std::string secret;
  std::uint32_t waitMs = 0;
  std::vector<std::atomic<std::uint8_t>> arrived, ready;  // counts seen, so each must appear once
  std::atomic<long> requests{0};
  explicit Shared(int ranks) : n(ranks), arrived(static_cast<std::size_t>(ranks)), ready(static_cast<std::size_t>(ranks)) {}
};

struct Rank {
  int r = 0;
  kumi::Fd fd;
  enum Phase { kConnecting, kGreeting, kVerdict, kJoining, kFinished } phase = kConnecting;
  Step step = kWorldSize;
  sp::Command command = sp::kPing;  // of the request in flight
  std::string in, out;
  std::size_t outSent = 0;
  kumi::auth::Nonce serverNonce{}, clientNonce{};
  Clock::time_point started, finished;
  int reconnects = 0;
  Clock::time_point retryAt{};
  std::string error;  // non-empty: this rank failed
};

// Replies are parsed from what has arrived so far with the client's own readReply; running out
// of bytes means "wait for more", not an error.
struct Incomplete {};
class BufferSource final : public sp::ByteSource {
 public:
  explicit BufferSource(const std::string& b) : b_(b) {}
  void read(void* out, std::size_t n) override {
    if (b_.size() - pos_ < n) throw Incomplete{};
    std::memcpy(out, b_.data() + pos_, n);
    pos_ += n;
  }
  std::size_t used() const { return pos_; }

 private:
  const std::string& b_;
  std::size_t pos_ = 0;
};

// Drives a share of the ranks from one thread.
class Driver {

 public:
  Driver(Shared& shared, const kumi::SockAddr& server, std::vector<Rank*> ranks, std::size_t burst)
      : s_(shared), server_(server), ranks_(std::move(ranks)), burst_(burst), epfd_(::epoll_create1(EPOLL_CLOEXEC)) {}

  void run(Clock::time_point deadline) {
    std::size_t started = 0;
    std::vector<epoll_event> events(512);
    while (active_ > 0) {
      // Ranks start in small bursts with their events served in between: every rank of a real
      // job is a process of its own that answers its greeting at once, not after all the others
      // have connected.
      // (--burst 0: all at once, before any greeting is answered, the hardest case for the store.)
      for (std::size_t b = 0; (burst_ == 0 || b < burst_) && started < ranks_.size(); ++b, ++started) {
        ranks_[started]->started = Clock::now();
        connect(*ranks_[started]);
      }
      const auto now = Clock::now();
      if (now >= deadline) break;
      int waitMs = started < ranks_.size()
                       ? 0
                       : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
      for (Rank* k : retries_) waitMs = std::min(waitMs, static_cast<int>(std::max<long long>(
                                            0, std::chrono::duration_cast<std::chrono::milliseconds>(k->retryAt - now).count())));
      const int n = ::epoll_wait(epfd_.get(), events.data(), static_cast<int>(events.size()), waitMs);
      for (int i = 0; i < n; ++i) {
        Rank& k = *static_cast<Rank*>(events[i].data.ptr);
        // Finished, or broken earlier in this batch (it reconnects after the batch).
        if (k.phase == Rank::kFinished || !k.fd.valid()) continue;
        if (k.phase == Rank::kConnecting) connected(k);
        else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) receive(k);
        if (k.phase != Rank::kFinished && k.fd.valid()) flush(k);
      }
      retryDue();
    }
    for (Rank* k : ranks_)
      if (k->phase != Rank::kFinished) finish(*k, "timed out in step " + std::to_string(k->step));
  }

 private:
  void finish(Rank& k, std::string error) {
    k.error = std::move(error);
    k.phase = Rank::kFinished;
    k.finished = Clock::now();
    k.fd.reset();  // its last reply is in: closing now is what a rank that joined does later
    --active_;
  }

  // A connection lost before the handshake completed is made again, as TcpStoreClient does
  // (with its backoff); after that, a loss fails the rank, as it would fail a real join.
  void broken(Rank& k, const std::string& why) {
    if (k.phase == Rank::kJoining) return finish(k, "connection lost in step " + std::to_string(k.step) + ": " + why);
    k.fd.reset();
    ++k.reconnects;
    k.retryAt = Clock::now() + std::chrono::milliseconds(std::min(1000, 20 << std::min(k.reconnects - 1, 6)));
    retries_.push_back(&k);
  }

  void retryDue() {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < retries_.size();) {
      if (retries_[i]->retryAt <= now) {
        Rank* k = retries_[i];
        retries_[i] = retries_.back();
        retries_.pop_back();
        connect(*k);
      } else {
        ++i;
      }
    }
  }

  void connect(Rank& k) {
    k.phase = Rank::kConnecting;
    k.in.clear();
    k.out.clear();
    k.outSent = 0;
    k.fd = kumi::Fd(::socket(server_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!k.fd.valid()) return finish(k, std::string("socket: ") + std::strerror(errno));
    kumi::setNoDelay(k.fd.get());
    if (::connect(k.fd.get(), server_.sa(), server_.length) != 0 && errno != EINPROGRESS)
      return broken(k, std::string("connect: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = &k;
    ::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, k.fd.get(), &ev);
  }

  void connected(Rank& k) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(k.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return broken(k, std::string("connect: ") + std::strerror(err));
    k.phase = Rank::kGreeting;
    receive(k);  // the greeting may be there already
  }

  void receive(Rank& k) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(k.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        k.in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      progress(k);  // what came before the close still counts
      if (k.phase != Rank::kFinished) broken(k, n == 0 ? "closed by the store" : std::strerror(errno));
      return;
    }
    progress(k);
  }

  void progress(Rank& k) {
    try {
      for (bool more = true; more && k.phase != Rank::kFinished;) more = advance(k);
    } catch (const kumi::Error& e) {
      finish(k, e.what());
    }
  }

  // One step forward when its bytes are in; false when it must wait for more.
  bool advance(Rank& k) {
    switch (k.phase) {
      case Rank::kGreeting: {
        if (k.in.size() < sizeof(sp::Greeting)) return false;
        sp::Greeting g;
        std::memcpy(&g, k.in.data(), sizeof g);
        k.in.erase(0, sizeof g);
        const auto check = sp::checkGreeting(g, !s_.secret.empty());
        if (check != sp::GreetingCheck::kOk) kumi::fail(kumiRemoteError, "store ", sp::describe(check));
        std::memcpy(k.serverNonce.data(), g.nonce, k.serverNonce.size());
        if (!s_.secret.empty()) k.clientNonce = kumi::auth::randomNonce();
        const sp::ClientHello hello = sp::makeClientHello(s_.secret, k.serverNonce, k.clientNonce);
        k.out.append(reinterpret_cast<const char*>(&hello), sizeof hello);
        if (!s_.secret.empty()) {
          k.phase = Rank::kVerdict;
          return true;
        }
        // Without a secret the first request follows the hello at once, as TcpStoreClient's does.
        k.phase = Rank::kJoining;
        request(k);
        return true;
      }
      case Rank::kVerdict: {
        if (k.in.size() < sizeof(sp::Verdict)) return false;
        sp::Verdict v;
        std::memcpy(&v, k.in.data(), sizeof v);
        k.in.erase(0, sizeof v);
        if (!sp::verdictProvesServer(v, s_.secret, k.serverNonce, k.clientNonce))
          kumi::fail(kumiRemoteError, "the store refused the secret or did not prove it");
        k.phase = Rank::kJoining;
        request(k);
        return true;
      }
      case Rank::kJoining: {
        sp::Reply reply;
        BufferSource src(k.in);
        try {
          reply = sp::readReply(src, k.command, "reply");
        } catch (const Incomplete&) {
          return false;
        }
        k.in.erase(0, src.used());
        s_.requests.fetch_add(1, std::memory_order_relaxed);
        check(k, reply);
        if (k.step == kDone) {
          finish(k, {});
          return false;
        }
        request(k);
        return true;
      }
      default:
        return false;
    }
  }

  std::string key(const std::string& name) const { return s_.prefix + name; }
  std::string key(const char* space, int r) const { return s_.prefix + space + std::to_string(r); }

  // Appends the request of k's current step.
  void request(Rank& k) {
    sp::Writer w;
    auto str1 = [&](sp::Command c, const std::string& key) {
      k.command = c;
      w.u8(c);
      w.str(key);
    };
    switch (k.step) {
      case kWorldSize: str1(sp::kCompareSet, key("world_size")); w.str(""); w.str(std::to_string(s_.n)); break;
      case kClaim: str1(sp::kCompareSet, key("claim/", k.r)); w.str(""); w.str(claimToken(k.r)); break;
      case kSetAddress: str1(sp::kSet, key("tcp/", k.r)); w.str(addressOf(k.r)); break;
      case kAddArrived: str1(sp::kAdd, key("tcp/arrived")); w.i64(1); break;
      case kSetAll: str1(sp::kSet, key("tcp/all")); w.str("1"); break;
      case kGetNext: str1(sp::kGet, key("tcp/", (k.r + 1) % s_.n)); w.u32(s_.waitMs); break;
      case kGetPrev: str1(sp::kGet, key("tcp/", (k.r - 1 + s_.n) % s_.n)); w.u32(s_.waitMs); break;
      case kAddReady: str1(sp::kAdd, key("ready/arrived")); w.i64(1); break;
      case kSetReady: str1(sp::kSet, key("ready/all")); w.str("1"); break;
      case kWaitAll:
      case kWaitReady:
        k.command = sp::kWait;
        w.u8(sp::kWait);
        w.strs({key(k.step == kWaitAll ? "tcp/all" : "ready/all")});
        w.u32(s_.waitMs);
        break;
      case kDone: return;
    }
    k.out += w.bytes();
  }

  // A count from add must lie in 1..N and be seen once over all ranks: then the counter reached
  // exactly N and every rank's add took effect once.
  static void countOnce(std::vector<std::atomic<std::uint8_t>>& seen, std::int64_t v, const char* what) {
    if (v < 1 || v > static_cast<std::int64_t>(seen.size()))
      kumi::fail(kumiInternalError, what, " returned ", v, ", outside 1..", seen.size());
    if (seen[static_cast<std::size_t>(v - 1)].exchange(1) != 0)
      kumi::fail(kumiInternalError, what, " returned ", v, " to two ranks");
  }

  // Verifies the reply to k's step and moves k to the next step.
  void check(Rank& k, const sp::Reply& rep) {
    auto expect = [&](const std::string& got, const std::string& want, const char* what) {
      if (got != want) kumi::fail(kumiInternalError, what, ": read '", got, "', expected '", want, "'");
    };
    if (rep.status != sp::kOk) kumi::fail(kumiTimeout, "step ", int(k.step), " timed out in the store");
    switch (k.step) {
      case kWorldSize: expect(rep.value, std::to_string(s_.n), "world_size"); k.step = kClaim; break;
      case kClaim: expect(rep.value, claimToken(k.r), "claim"); k.step = kSetAddress; break;
      case kSetAddress: k.step = kAddArrived; break;
      case kAddArrived:
        countOnce(s_.arrived, rep.integer, "add tcp/arrived");
        k.step = rep.integer == s_.n ? kSetAll : kWaitAll;
        break;
      case kSetAll: k.step = kWaitAll; break;
      case kWaitAll: k.step = kGetNext; break;
      case kGetNext: expect(rep.value, addressOf((k.r + 1) % s_.n), "next neighbour"); k.step = kGetPrev; break;
      case kGetPrev: expect(rep.value, addressOf((k.r - 1 + s_.n) % s_.n), "previous neighbour"); k.step = kAddReady; break;
      case kAddReady:
        countOnce(s_.ready, rep.integer, "add ready/arrived");
        k.step = rep.integer == s_.n ? kSetReady : kWaitReady;
        break;
      case kSetReady: k.step = kWaitReady; break;
      case kWaitReady: k.step = kDone; break;
      case kDone: break;
    }
  }

  void flush(Rank& k) {
    while (k.outSent < k.out.size()) {
      const ssize_t n = ::send(k.fd.get(), k.out.data() + k.outSent, k.out.size() - k.outSent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        k.outSent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return broken(k, std::string("send: ") + std::strerror(errno));
    }
    const bool drained = k.outSent == k.out.size();
    if (drained) {
      k.out.clear();
      k.outSent = 0;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (drained ? 0u : static_cast<unsigned>(EPOLLOUT));
    ev.data.ptr = &k;
    ::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, k.fd.get(), &ev);
  }

  Shared& s_;
  kumi::SockAddr server_;
  std::vector<Rank*> ranks_;
  std::size_t burst_;
  kumi::Fd epfd_;
  std::vector<Rank*> retries_;
  std::size_t active_ = ranks_.size();
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::string siblingProgram(const char* name) {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return name;
  std::string dir(self, static_cast<std::size_t>(n));
  return dir.substr(0, dir.rfind('/') + 1) + name;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  raiseFdLimit(static_cast<rlim_t>(opt.clients) + 64);
  try {
    Shared shared(opt.clients);
    shared.secret = kumi::secretFromEnv();
    shared.waitMs = static_cast<std::uint32_t>(opt.timeoutS * 1000);
    std::unique_ptr<StoreProcess> child;
    std::string address = opt.store;
    if (address.empty()) {
      child = std::make_unique<StoreProcess>(opt.storeBinary.empty() ? siblingProgram("kumi-store") : opt.storeBinary);
      address = child->address();
    } else {
      // A store that outlives this run: a fresh key space, so runs never see each other's counts.
      shared.prefix = "store-load-" + std::to_string(::getpid()) + "-" +
                      std::to_string(Clock::now().time_since_epoch().count()) + "/";
    }
    auto [host, port] = kumi::splitHostPort(address, "--store");
    const kumi::SockAddr server = kumi::resolve(host, port, "--store").front();
    const long hwmBefore = child ? memoryKb(child->pid(), "VmHWM") : 0;

    std::vector<Rank> ranks(static_cast<std::size_t>(opt.clients));
    std::vector<std::unique_ptr<Driver>> drivers;
    for (int t = 0; t < opt.threads; ++t) {
      std::vector<Rank*> share;
      for (int r = t; r < opt.clients; r += opt.threads) {
        ranks[static_cast<std::size_t>(r)].r = r;
        share.push_back(&ranks[static_cast<std::size_t>(r)]);
      }
      drivers.push_back(std::make_unique<Driver>(shared, server, std::move(share), static_cast<std::size_t>(opt.burst)));
    }
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.timeoutS));
    {
      std::vector<std::jthread> threads;
      for (auto& d : drivers) threads.emplace_back([&d, deadline] { d->run(deadline); });
    }
    Clock::time_point last = t0;
    std::vector<double> joinS;
    int failed = 0, reconnects = 0;
    std::string firstErrors;
    for (const Rank& k : ranks) {
      reconnects += k.reconnects;
      last = std::max(last, k.finished);
      if (!k.error.empty()) {
        if (failed++ < 5) firstErrors += "  rank " + std::to_string(k.r) + ": " + k.error + "\n";
        continue;
      }
      joinS.push_back(std::chrono::duration<double>(k.finished - k.started).count());
    }
    const double totalS = std::chrono::duration<double>(last - t0).count();
    const long hwmAfter = child ? memoryKb(child->pid(), "VmHWM") : 0;
    const long rssAfter = child ? memoryKb(child->pid(), "VmRSS") : 0;
    const long requests = shared.requests.load();
    const int joined = opt.clients - failed;

    std::printf("kumi-store-load: %d ranks joined through %s (%s, %d loader threads, secret: %s)\n", opt.clients,
                address.c_str(), child ? "kumi-store child" : "external store", opt.threads,
                shared.secret.empty() ? "no" : "yes");
    std::printf("  joined               : %d of %d%s\n", joined, opt.clients, failed ? "  FAILED" : "  OK");
    std::printf("  join time            : %.3f s (first connect to last rank done)\n", totalS);
    std::printf("  per-rank join time   : p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s\n", percentile(joinS, 50),
                percentile(joinS, 90), percentile(joinS, 99), percentile(joinS, 100));
    std::printf("  requests served      : %ld (%.0f per second)\n", requests, totalS > 0 ? requests / totalS : 0.0);
    std::printf("  reconnects           : %d (handshakes the store broke off)\n", reconnects);
    if (child)
      std::printf("  store peak RSS       : %.1f MiB before, %.1f MiB after (VmRSS now %.1f MiB)\n", hwmBefore / 1024.0,
                  hwmAfter / 1024.0, rssAfter / 1024.0);
    if (failed) std::printf("  first failures:\n%s", firstErrors.c_str());
    if (!opt.json.empty()) {
      std::FILE* f = std::fopen(opt.json.c_str(), "w");
      if (!f) die("cannot write " + opt.json);
      std::fprintf(f,
                   "{\n  \"clients\": %d,\n  \"threads\": %d,\n  \"secret\": %s,\n  \"joined\": %d,\n  \"failed\": %d,\n"
                   "  \"reconnects\": %d,\n  \"join_s\": %.6f,\n  \"rank_join_s\": {\"p50\": %.6f, \"p90\": %.6f, "
                   "\"p99\": %.6f, \"max\": %.6f},\n  \"requests\": %ld,\n  \"store_pid\": %d,\n"
                   "  \"store_hwm_kb_before\": %ld,\n  \"store_hwm_kb_after\": %ld,\n  \"store_rss_kb_after\": %ld\n}\n",
                   opt.clients, opt.threads, shared.secret.empty() ? "false" : "true", joined, failed, reconnects, totalS,
                   percentile(joinS, 50), percentile(joinS, 90), percentile(joinS, 99), percentile(joinS, 100), requests,
                   child ? static_cast<int>(child->pid()) : 0, hwmBefore, hwmAfter, rssAfter);
      std::fclose(f);
    }
    return failed ? 1 : 0;
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "kumi-store-load: %s\n", e.what());
    return 2;
  }
}
