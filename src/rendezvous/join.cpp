#include "rendezvous/join.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "core/strings.hpp"
#include "rendezvous/bootstrap.hpp"

namespace kumi {

Incarnation Incarnation::mine(const std::string& hostId, int number) {
  std::uint32_t r[2];
  auth::randomBytes(r, sizeof r);
  Incarnation i;
  i.token = hex32(r[0]) + hex32(r[1]);
  i.hostname = Registry::instance().hostname();
  i.hostId = hostId;
  i.pid = static_cast<long>(::getpid());
  i.number = number;
  return i;
}

std::string Incarnation::encode() const {
  return cat(token, '\n', hostname, '\n', hostId, '\n', pid, '\n', number);
}

std::optional<Incarnation> Incarnation::decode(const std::string& text) {
  const std::vector<std::string> f = splitList(text, '\n');
  if (f.size() != 5) return std::nullopt;
  Incarnation i{f[0], f[1], f[2], 0, 0};
  char* end = nullptr;
  i.pid = std::strtol(f[3].c_str(), &end, 10);
  if (f[3].empty() || *end) return std::nullopt;
  long n = std::strtol(f[4].c_str(), &end, 10);
  if (f[4].empty() || *end || n < 0 || n > INT32_MAX) return std::nullopt;
  i.number = static_cast<int>(n);
  return i;
}

std::string Incarnation::describe() const {
  return cat("pid ", pid, " on ", hostname, " (incarnation ", number, ")");
}

bool pidAliveHere(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

namespace {
template <class... Args>
[[noreturn]] void refuse(const Args&... args) {
  throw JoinRefused(cat(args...));
}

// Whether `theirs`, holding the rank, is an earlier incarnation of `me` that is gone.
bool supersedes(const Incarnation& me, const Incarnation& theirs, const PidAlive& alive, std::string* why) {
  if (me.number != theirs.number) {
    *why = me.number > theirs.number ? "a later incarnation" : "";
    return me.number > theirs.number;
  }
  if (me.hostId == theirs.hostId) {
    // The same host and pid namespace: the pid says whether it still runs.
    if (alive(theirs.pid)) return false;
    *why = "the same host, and that process has exited";
    return true;
  }
  // Another host id with the same name: the pod was recreated (a new pod gets a new IPC namespace).
  if (me.hostname == theirs.hostname) {
    *why = "the same pod name on a new host id: the pod was recreated";
    return true;
  }
  return false;
}
}  // namespace

Claim claimRank(Store& store, int rank, const Incarnation& me, const std::string& formedKey, const PidAlive& alive) {
  const std::string key = cat("claim/", rank);
  const std::string mine = me.encode();
  std::string held = store.compareSet(key, "", mine);
  for (;;) {
    if (held == mine) return Claim::kNew;
    auto theirs = Incarnation::decode(held);
    if (!theirs) fail(kumiRemoteError, "rank ", rank, ": unreadable claim in the store ('", held, "')");
    std::string why;
    if (!supersedes(me, *theirs, alive, &why)) {
      if (me.number < theirs->number)
        refuse("rank ", rank, " (", me.describe(), ") is an earlier incarnation: ", theirs->describe(),
             " has replaced it; this process is left over from before a restart and must exit");
      refuse("rank ", rank, " is already held by ", theirs->describe(), "; ", me.describe(),
           " claims it too: two processes were given rank ", rank,
           " (a duplicated index, two launchers, or a stale pod still running)");
    }
    if (store.check({formedKey}))
      refuse("rank ", rank, " (", me.describe(), ") arrived after the job formed with ",
           theirs->describe(), ": a rank replaced after start-up needs the whole job restarted");
    std::string now = store.compareSet(key, held, mine);
    if (now == mine) {
      KUMI_WARN("rank ", rank, ": replacing ", theirs->describe(), " (", why, ")");
      return Claim::kReplaced;
    }
    held = now;  // someone else changed it meanwhile: judge again
  }
}

void confirmClaim(Store& store, int rank, const Incarnation& me) {
  const std::string held = store.get(cat("claim/", rank), Store::Timeout(10000));
  if (held == me.encode()) return;
  auto theirs = Incarnation::decode(held);
  refuse("rank ", rank, " (", me.describe(), ") was taken over by ",
       theirs ? theirs->describe() : std::string("another process"),
       " while the job formed: this process was replaced (a recreated pod) and must exit");
}

void enterGeneration(const std::shared_ptr<Store>& base, const std::string& jobId, int generation, int rank, const std::string& hostname) {
  const std::string key = cat("kumi/", jobId, "/generation");
  const std::string mine = std::to_string(generation);
  std::string held = base->compareSet(key, "", mine);
  while (held != mine) {
    char* end = nullptr;
    long theirs = std::strtol(held.c_str(), &end, 10);
    if (held.empty() || *end) fail(kumiRemoteError, "unreadable generation record '", held, "' for job '", jobId, "'");
    if (theirs > generation)
      refuse("rank ", rank, " on ", hostname, " belongs to restart generation ", generation, " of job '",
           jobId, "', but the job has restarted as generation ", theirs,
           ": this process is left over from an earlier attempt and must exit");
    std::string now = base->compareSet(key, held, mine);
    if (now == mine) {
      // Ranks of the earlier generation that are still forming their first communicator (or
      // running it) learn why their peers will never come.
      PrefixStore earlier(cat("kumi/", jobId, "/g", theirs, "/c0"), base);
      postAbort(earlier, cat("job '", jobId, "' restarted as generation ", generation, " (rank ", rank, " on ", hostname,
                             " arrived): this process belongs to generation ", theirs, " and must exit"));
      KUMI_INFO("job '", jobId, "': generation ", theirs, " -> ", generation);
      return;
    }
    held = now;
  }
}

}  // namespace kumi
