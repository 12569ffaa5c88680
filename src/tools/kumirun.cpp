// kumirun: starts N local ranks of a program with a rendezvous store, prefixes each output line
// with its rank, and ends the job cleanly: the first failing rank's status is returned and the
// others are stopped within seconds, as they are on Ctrl-C or when --timeout passes.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/secret.hpp"
#include "core/socket.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace {

using Clock = std::chrono::steady_clock;
// How long the other ranks may take to report a failure before kumirun terminates them.
constexpr auto kGrace = std::chrono::milliseconds(1500);
int signalPipe[2] = {-1, -1};

void onSignal(int sig) {
  unsigned char s = static_cast<unsigned char>(sig);
  [[maybe_unused]] auto n = ::write(signalPipe[1], &s, 1);
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: kumirun -np N [--nodes M] [--timeout SECONDS] [--no-prefix] -- PROGRAM [ARGS...]\n"
               "  Starts N ranks of PROGRAM on this machine with a rendezvous store, and sets\n"
               "  KUMI_RANK, KUMI_WORLD_SIZE, KUMI_LOCAL_RANK, KUMI_LOCAL_SIZE, KUMI_STORE, KUMI_JOB_ID.\n"
               "  The store and every connection between ranks require the job's secret: KUMI_SECRET or\n"
               "  KUMI_SECRET_FILE when set (passed on to the ranks), else a random one made for this job.\n"
               "  --nodes M     split the ranks into M simulated hosts (KUMI_HOSTID differs per host)\n"
               "  --timeout S   stop the job after S seconds (exit status 124)\n"
               "  --no-prefix   do not prefix output lines with [rank]\n"
               "Exit status: the first non-zero status of a rank (128+signal if it was killed).\n");
}

struct Rank {
  int rank;
  pid_t pid = -1;
  int outFd = -1, errFd = -1;
  std::string outBuf, errBuf;
  bool exited = false;
  int status = 0;
};

// Writes all of s (a signal may cut a write short).
void writeAll(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the reader went away (e.g. kumirun ... | head)
    done += static_cast<std::size_t>(n);
  }
}

void emit(int fd, const std::string& prefix, std::string& buf, bool flushAll) {
  std::size_t start = 0;
  for (;;) {
    auto nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    writeAll(fd, prefix + buf.substr(start, nl - start + 1));
    start = nl + 1;
  }
  buf.erase(0, start);
  if (flushAll && !buf.empty()) {
    writeAll(fd, prefix + buf + "\n");
    buf.clear();
  }
}

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int np = -1, nodes = 1;
  double timeout = 0;
  bool prefix = true;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "kumirun: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--") { ++i; break; }
    if (a == "-np" || a == "-n" || a == "--np") np = std::atoi(value("-np").c_str());
    else if (a == "--nodes") nodes = std::atoi(value("--nodes").c_str());
    else if (a == "--timeout") timeout = std::atof(value("--timeout").c_str());
    else if (a == "--no-prefix") prefix = false;
    else if (a == "-h" || a == "--help") { usage(stdout); return 0; }
    else if (!a.empty() && a[0] == '-') { std::fprintf(stderr, "kumirun: unknown option %s\n", a.c_str()); usage(stderr); return 2; }
    else break;  // the program, without "--"
  }
  if (np < 1 || i >= argc) { usage(stderr); return 2; }
  if (nodes < 1 || nodes > np) {
    std::fprintf(stderr, "kumirun: --nodes must be between 1 and -np (%d), got %d\n", np, nodes);
    return 2;
  }

  // The job's secret: the user's, passed on to the ranks as they were given it, or else a random
  // one made for this job, so that other users of this machine can neither join the job nor read
  // its store (the ranks' environment, where it travels, is readable only by this user).
  std::string secret;
  try {
    secret = kumi::secretFromEnv();
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "kumirun: %s\n", e.what());
    return 2;
  }
  const bool madeSecret = secret.empty();
  if (madeSecret) secret = kumi::auth::randomHex(32);

  // The store serves this job only, on loopback.
  std::unique_ptr<kumi::TcpStoreServer> store;
  try {
    store = std::make_unique<kumi::TcpStoreServer>(kumi::resolve("127.0.0.1", 0, "kumirun").front(), secret);
    store->start();
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "kumirun: cannot start the store: %s\n", e.what());
    return 1;
  }
  const std::string storeAddr = store->address().str();
  const char* givenJob = std::getenv("KUMI_JOB_ID");
  const std::string jobId = givenJob && *givenJob ? givenJob : kumi::cat("kumirun-", ::getpid(), "-", std::time(nullptr));

  if (::pipe2(signalPipe, O_CLOEXEC | O_NONBLOCK) != 0) { std::perror("kumirun: pipe"); return 1; }
  struct sigaction sa{};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a closed output pipe must not kill the launcher before its ranks

  // Ranks fill hosts in blocks as even as possible: the first np % nodes hosts get one more.
  auto nodeSize = [&](int node) { return np / nodes + (node < np % nodes ? 1 : 0); };
  auto nodeStartOf = [&](int node) { return node * (np / nodes) + std::min(node, np % nodes); };
  std::vector<Rank> ranks(static_cast<std::size_t>(np));
  for (int r = 0; r < np; ++r) {
    Rank& rk = ranks[static_cast<std::size_t>(r)];
    rk.rank = r;
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) { std::perror("kumirun: pipe"); return 1; }
    int node = 0;
    while (nodeStartOf(node + 1) <= r) ++node;
    const int nodeStart = nodeStartOf(node);
    const int localSize = nodeSize(node);
    pid_t pid = ::fork();
    if (pid < 0) { std::perror("kumirun: fork"); return 1; }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive kumirun
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) ::signal(sig, SIG_DFL);
      ::setenv("KUMI_RANK", std::to_string(r).c_str(), 1);
      ::setenv("KUMI_WORLD_SIZE", std::to_string(np).c_str(), 1);
      ::setenv("KUMI_LOCAL_RANK", std::to_string(r - nodeStart).c_str(), 1);
      ::setenv("KUMI_LOCAL_SIZE", std::to_string(localSize).c_str(), 1);
      ::setenv("KUMI_NODE_RANK", std::to_string(node).c_str(), 1);
      ::setenv("KUMI_STORE", storeAddr.c_str(), 1);
      ::setenv("KUMI_STORE_SERVE", "0", 1);
      ::setenv("KUMI_JOB_ID", jobId.c_str(), 1);
      if (madeSecret) ::setenv("KUMI_SECRET", secret.c_str(), 1);
      if (nodes > 1) ::setenv("KUMI_HOSTID", kumi::cat(jobId, "-node", node).c_str(), 1);
      ::execvp(argv[i], argv + i);
      std::fprintf(stderr, "kumirun: cannot run %s: %s\n", argv[i], std::strerror(errno));
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    ::close(out[1]);
    ::close(err[1]);
    rk.pid = pid;
    rk.outFd = out[0];
    rk.errFd = err[0];
  }

  const auto start = Clock::now();
  int result = 0;
  bool stopping = false;
  Clock::time_point stopAt{};
  bool killed = false;
  Clock::time_point allExitedAt{};
  auto stopAll = [&](int sig) {
    for (auto& rk : ranks)
      if (!rk.exited) {
        ::kill(-rk.pid, sig);  // the rank and what it started
        ::kill(rk.pid, sig);   // in case it left its process group
      }
  };
  // After a rank fails, the others get a moment to notice through kumi and report their own
  // view of the failure before they are terminated; Ctrl-C and --timeout stop at once.
  bool termSent = false;
  auto beginStop = [&](bool grace) {
    if (stopping) return;
    stopping = true;
    stopAt = Clock::now() - (grace ? std::chrono::seconds(0) : kGrace);
  };

  std::size_t open = 2 * ranks.size();
  std::size_t running = ranks.size();
  std::vector<char> buf(65536);
  while (open > 0 || running > 0) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Rank*, bool>> owners;  // (rank, isErr)
    fds.push_back({signalPipe[0], POLLIN, 0});
    owners.push_back({nullptr, false});
    for (auto& rk : ranks) {
      if (rk.outFd >= 0) { fds.push_back({rk.outFd, POLLIN, 0}); owners.push_back({&rk, false}); }
      if (rk.errFd >= 0) { fds.push_back({rk.errFd, POLLIN, 0}); owners.push_back({&rk, true}); }
    }
    ::poll(fds.data(), fds.size(), 100);
    for (std::size_t k = 1; k < fds.size(); ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Rank& rk = *owners[k].first;
      int& fd = owners[k].second ? rk.errFd : rk.outFd;
      std::string& b = owners[k].second ? rk.errBuf : rk.outBuf;
      ssize_t n = ::read(fd, buf.data(), buf.size());
      std::string pre = prefix ? kumi::cat('[', rk.rank, "] ") : std::string();
      if (n > 0) {
        b.append(buf.data(), static_cast<std::size_t>(n));
        emit(owners[k].second ? STDERR_FILENO : STDOUT_FILENO, pre, b, false);
      } else {
        emit(owners[k].second ? STDERR_FILENO : STDOUT_FILENO, pre, b, true);
        ::close(fd);
        fd = -1;
        --open;
      }
    }
    unsigned char sig;
    while (::read(signalPipe[0], &sig, 1) == 1) {
      if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        std::fprintf(stderr, "kumirun: signal %d, stopping all ranks\n", sig);
        if (result == 0) result = 128 + sig;
        beginStop(false);
      }
    }
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto& rk : ranks) {
        if (rk.pid != pid) continue;
        rk.exited = true;
        rk.status = status;
        --running;
        int code = exitCodeOf(status);
        if (code != 0 && !stopping) {
          std::fprintf(stderr, "kumirun: rank %d %s %d; stopping the other ranks\n", rk.rank,
                       WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                       WIFSIGNALED(status) ? WTERMSIG(status) : code);
          if (result == 0) result = code;
          beginStop(true);
        }
      }
    }
    if (timeout > 0 && !stopping && Clock::now() - start > std::chrono::duration<double>(timeout)) {
      std::fprintf(stderr, "kumirun: job exceeded --timeout %g s; stopping all ranks\n", timeout);
      result = 124;
      beginStop(false);
    }
    if (stopping && !termSent && Clock::now() - stopAt >= kGrace) {
      stopAll(SIGTERM);
      termSent = true;
    }
    // Ranks that ignore SIGTERM are killed 2 s later; pipes held by their children are dropped.
    if (stopping && !killed && Clock::now() - stopAt > kGrace + std::chrono::seconds(2)) {
      stopAll(SIGKILL);
      killed = true;
    }
    if (running == 0 && allExitedAt == Clock::time_point{}) allExitedAt = Clock::now();
    // Output pipes inherited by a rank's own children must not keep the job alive.
    if (running == 0 && Clock::now() - allExitedAt > std::chrono::seconds(2)) break;
  }
  store->stop();
  return result;
}
