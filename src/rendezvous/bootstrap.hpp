// Forming a job: reaching (or hosting) the store, agreeing on the world size, and the join
// barrier whose timeout names the ranks that never arrived.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/store.hpp"

namespace kumi {

struct StoreConnection {
  std::shared_ptr<Store> store;
  std::optional<SockAddr> serverAddress;  // to choose the interface toward it (TCP store only)
};

// Connects to cfg.store: "host:port" for the TCP store, where rank 0 (or KUMI_STORE_SERVE=1)
// first starts a server that lives as long as the process, so later communicators and late
// ranks can still use it; or "file:///dir" for a file store on a shared filesystem.
StoreConnection connectStore(const Config& cfg, const Deadline& deadline);

// First step of joining: every rank checks that all agree on the world size (compare-and-set),
// then publishes "host/<rank>". A rank that disagrees posts "abort" so that the others fail at
// once with its story.
void agreeOnWorldSize(Store& store, int rank, int worldSize);

// Last step: waits until every rank has published "<what>/<rank>". The timeout names the ranks
// that never arrived; a posted abort or a lost store fails at once, naming those still missing.
// A set `cancel` flag (abort) ends the wait with kumiAborted.
// parent: while a split builds a communicator, the parent's store, whose failure notice (a rank
// aborted or failed during the split) ends the wait too.
// count: false for a rank that replaced an earlier incarnation of itself, which was counted.
// hostOf: where the launcher puts a rank (its pod name), to name the missing ones; may be empty.
void waitForRanks(Store& store, int worldSize, const std::string& what, const Deadline& deadline,
                  const std::atomic<bool>* cancel = nullptr, Store* parent = nullptr, bool count = true,
                  const std::function<std::string(int)>& hostOf = {});

// Waits until every key exists (keys of a subset of ranks, e.g. those of one host), failing
// at once on a posted abort or `cancel`, and at the deadline naming the keys still missing.
void waitForKeys(Store& store, const std::vector<std::string>& keys, const std::string& what, const Deadline& deadline,
                 const std::atomic<bool>* cancel = nullptr);

// Posts a failure for the peers of a communicator (best effort). The first notice posted stays:
// returns it (message itself when this was the first), or "" when the store cannot be reached.
std::string postAbort(Store& store, const std::string& message);

// The failure notice posted on this store, or "" when there is none (throws if the store cannot
// be reached).
std::string readFailureNotice(Store& store);

}  // namespace kumi
