// Forming a job: reaching (or hosting) the store, agreeing on the world size, and the join
// barrier whose timeout names the ranks that never arrived.
#pragma once

#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/store.hpp"

namespace kumi {

struct StoreConnection {
  std::shared_ptr<Store> store;
  SockAddr serverAddress;  // to choose the interface toward it
};

// Connects to cfg.store; rank 0 (or KUMI_STORE_SERVE=1) first starts a server there, which lives
// as long as the process, so later communicators and late ranks can still use it.
StoreConnection connectStore(const Config& cfg, const Deadline& deadline);

// All ranks of a communicator: checks that everyone agrees on the world size, publishes
// "host/<rank>", then waits until every rank has published key "<what>/<rank>". A failure is
// posted under "abort" so that the others fail at once with the same story.
void joinBarrier(Store& store, int rank, int worldSize, const std::string& what, const Deadline& deadline);

// Posts a failure for the peers of a communicator (best effort).
void postAbort(Store& store, const std::string& message);

}  // namespace kumi
