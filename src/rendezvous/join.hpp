// Who may join a job: restart generations and rank claims. In a gang job a pod can come back
// (same name, new address) while the others are still forming the job, a pod of an earlier
// attempt can linger, and a mistake can give two pods one index. The first must be let in, the
// other two refused with an error that names both sides, never mixed in.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "rendezvous/store.hpp"

namespace kumi {

// This process may not join (a duplicate, a stale incarnation or generation). It is not part of
// the job, so it must not post a failure for the job's ranks: they go on without it.
class JoinRefused : public Error {
 public:
  explicit JoinRefused(std::string message) : Error(kumiInvalidUsage, std::move(message)) {}
};

// One process's claim to a rank.
struct Incarnation {
  std::string token;     // random, unique to this process and communicator
  std::string hostname;  // a pod's name: a replaced pod keeps it
  std::string hostId;    // topology/host_id: equal only where the pid below means the same process
  long pid = 0;
  int number = 0;        // Config::incarnation: this rank's own restart count, when a launcher gives it

  // A fresh claim for this process.
  static Incarnation mine(const std::string& hostId, int number);
  std::string encode() const;
  static std::optional<Incarnation> decode(const std::string& text);
  std::string describe() const;  // "pid 12 on pod-a (incarnation 0)"
};

// Whether a process of this host (same host id) is alive.
using PidAlive = std::function<bool(long pid)>;
bool pidAliveHere(long pid);

enum class Claim { kNew, kReplaced };

// Claims `rank` of a communicator (its own store namespace). kNew: the rank was free, and the
// join barrier must count it; kReplaced: an earlier incarnation of the same rank held it and is
// gone (a higher incarnation number; or the same host id with a dead pid; or the same pod name on
// another host id: a pod recreated), and was counted already. Throws JoinRefused naming both
// processes when a live process holds the rank, or when this one is the older incarnation, or
// when the job already formed with the earlier one (`formedKey` set).
Claim claimRank(Store& store, int rank, const Incarnation& me, const std::string& formedKey,
                const PidAlive& alive = pidAliveHere);

// After the join barrier: fails when the claim is no longer this process's (a newer incarnation of
// the rank replaced it while it waited: this one is the stale pod and must not take part).
void confirmClaim(Store& store, int rank, const Incarnation& me);

// Root communicators only, on the job's base store: records the job's restart generation. A
// process of an earlier generation is refused; a later one moves the record on and tells the
// ranks of the earlier generation, still forming their job in this store, that it restarted.
void enterGeneration(const std::shared_ptr<Store>& base, const std::string& jobId, int generation, int rank, const std::string& hostname);

}  // namespace kumi
