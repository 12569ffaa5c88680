#include "rendezvous/bootstrap.hpp"

#include <algorithm>
#include <string_view>
#include <thread>

#include "core/error.hpp"
#include "core/file_limit.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "rendezvous/file_store.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace kumi {

namespace {
std::shared_ptr<TcpStoreServer> serveStore(const std::string& hostPort, const std::string& secret) {
  return Registry::instance().service<TcpStoreServer>("store-server:" + hostPort, [&] {
    auto [host, port] = splitHostPort(hostPort, "KUMI_STORE");
    std::vector<SockAddr> addrs;
    std::string why;
    try {
      addrs = resolve(host, port, "KUMI_STORE");
    } catch (const Error& e) {
      // The coordinator's own DNS name (a pod under a headless Service) may not exist yet when
      // it starts: it need not, to listen. The others keep resolving until it appears.
      why = e.what();
    }
    // Rank 0 of a large job holds a connection from every rank (before the server sizes its caps).
    const FileLimit limit = raiseFileLimit();
    KUMI_INFO("store server: file descriptor limit ", limit.now, limit.raised ? cat(" (raised from ", limit.before, ")") : "",
              ": room for ", limit.room, " ranks");
    std::shared_ptr<TcpStoreServer> server;
    try {
      if (addrs.empty()) fail(kumiSystemError, why);
      server = std::make_shared<TcpStoreServer>(addrs.front(), secret);
    } catch (const Error& e) {
      // A service name (e.g. a Kubernetes Service) may resolve to an address this pod does not
      // own; then listen on every address of that family, as torch's store does.
      if (!addrs.empty() && std::string(e.what()).find("Cannot assign requested address") == std::string::npos) throw;
      const bool v6 = !addrs.empty() ? addrs.front().family() == AF_INET6 : host.find(':') != std::string::npos;
      SockAddr any = resolve(v6 ? "::" : "0.0.0.0", port, "KUMI_STORE").front();
      if (addrs.empty()) KUMI_INFO("KUMI_STORE=", hostPort, " does not resolve yet (", why, "): listening on ", any.str());
      server = std::make_shared<TcpStoreServer>(any, secret);
      if (secret.empty())
        KUMI_WARN("the rendezvous store listens on every interface (", any.str(), ": KUMI_STORE=", hostPort,
                  " is not an address of this host) and without a secret: anyone who reaches the port can read and "
                  "write the job's keys; set KUMI_SECRET or KUMI_SECRET_FILE on every rank");
    }
    server->start();
    KUMI_INFO("serving the rendezvous store at ", server->address().str());
    return server;
  });
}
}  // namespace

StoreConnection connectStore(const Config& cfg, const Deadline& deadline) {
  // file:///shared/dir: a store on a shared filesystem, no server at all.
  constexpr std::string_view kFile = "file://";
  if (cfg.store.compare(0, kFile.size(), kFile) == 0) {
    std::string dir = cfg.store.substr(kFile.size());
    KUMI_REQUIRE_ARG(!dir.empty() && dir[0] == '/', "KUMI_STORE='", cfg.store, "': a file store needs an absolute path (file:///dir)");
    return {std::make_shared<FileStore>(dir), std::nullopt};
  }
  const bool serve = cfg.storeServe == 1 || (cfg.storeServe == -1 && cfg.rank == 0);
  if (serve) serveStore(cfg.store, cfg.secret);
  auto client = std::make_shared<TcpStoreClient>(cfg.store, deadline, cfg.secret);
  return {client, client->serverAddress()};
}

std::string postAbort(Store& store, const std::string& message) {
  try {
    return store.compareSet("abort", "", message);
  } catch (const Error&) {
    // The store may be gone too; the peers will see closed connections instead.
    return "";
  }
}

std::string readFailureNotice(Store& store) {
  return store.check({"abort"}) ? store.get("abort", Store::Timeout(1000)) : std::string();
}

void agreeOnWorldSize(Store& store, int rank, int worldSize) {
  const std::string mine = std::to_string(worldSize);
  std::string agreed = store.compareSet("world_size", "", mine);
  if (agreed != mine) {
    std::string msg = cat("started with world size ", worldSize, " but another rank with ", agreed,
                          ": all ranks must agree (check KUMI_WORLD_SIZE / -np)");
    postAbort(store, cat("rank ", rank, ": ", msg));
    fail(kumiInvalidArgument, msg);
  }
  store.set(cat("host/", rank), Registry::instance().hostname());
}

void waitForRanks(Store& store, int worldSize, const std::string& what, const Deadline& deadline,
                  const std::atomic<bool>* cancel, Store* parent, bool count,
                  const std::function<std::string(int)>& hostOf) {
  // Arrival is counted, and the last rank to arrive raises one flag that everyone waits for:
  // the store does O(1) work per rank instead of checking every rank's key for every rank.
  const std::string allKey = what + "/all";
  if (count && store.add(what + "/arrived", 1) == worldSize) store.set(allKey, "1");
  std::vector<std::string> keys;
  for (int r = 0; r < worldSize; ++r) keys.push_back(cat(what, "/", r));
  auto missingRanks = [&](const std::vector<std::string>& missing) {
    std::string out;
    std::size_t shown = 0;
    for (const auto& k : missing) {
      if (++shown > 32) break;
      const std::string rank = k.substr(what.size() + 1);
      std::string host = hostOf ? hostOf(std::atoi(rank.c_str())) : std::string();
      out += cat(shown > 1 ? ", " : "", rank, host.empty() ? "" : cat(" (", host, ")"));
    }
    if (missing.size() > 32) out += cat(" and ", missing.size() - 32, " more");
    return out;
  };
  // Who is still missing is asked only while the wait drags on (after 1 s, then every 2 s) and at
  // the deadline, so that a lost store or a timeout can still name the ranks.
  std::vector<std::string> missing;
  bool known = false;
  auto started = Deadline::Clock::now();
  auto lastAsked = started;
  for (;;) {
    bool done = false;
    try {
      done = store.waitFor({allKey}, std::chrono::milliseconds(std::clamp(deadline.msLeft(), 1, 500))).empty();
      // Once everyone arrived, start-up succeeded: a notice posted since (a rank that already
      // returned aborts) is for the communicator's first operation to report, not for init.
      if (!done)
        for (Store* s : {&store, parent})
          if (s)
            if (std::string notice = readFailureNotice(*s); !notice.empty())
              fail(kumiRemoteError, "another rank failed during start-up: ", notice);
      const auto now = Deadline::Clock::now();
      if (!done && (deadline.expired() || (now - started > std::chrono::seconds(1) &&
                                           (!known || now - lastAsked > std::chrono::seconds(2))))) {
        missing = store.waitFor(keys, Store::Timeout(0));
        known = true;
        lastAsked = now;
      }
    } catch (const Error& e) {
      if (e.code() == kumiRemoteError && std::string(e.what()).rfind("another rank", 0) == 0) throw;
      // The store went away: its host (rank 0) gave up or died. Say who was still missing then.
      if (!known) fail(kumiRemoteError, "the rendezvous store (", store.describe(), ") went away during start-up: ", e.what());
      fail(kumiRemoteError, missing.size(), " of ", worldSize, " ranks never arrived (ranks ", missingRanks(missing),
           ") before the rendezvous store (", store.describe(), ") went away; its host probably gave up: ", e.what());
    }
    if (done) return;
    if (cancel && cancel->load()) fail(kumiAborted, "aborted while waiting for ranks to arrive");
    if (deadline.expired()) {
      if (missing.empty())
        fail(kumiTimeout, "every rank published its address but the rendezvous (", store.describe(),
             ") did not complete before the deadline: a rank died while joining?");
      fail(kumiTimeout, missing.size(), " of ", worldSize, " ranks never arrived at the rendezvous (", store.describe(),
           ") before the deadline: ranks ", missingRanks(missing));
    }
  }
}

void waitForKeys(Store& store, const std::vector<std::string>& keys, const std::string& what, const Deadline& deadline,
                 const std::atomic<bool>* cancel) {
  for (;;) {
    auto missing = store.waitFor(keys, std::chrono::milliseconds(std::clamp(deadline.msLeft(), 1, 250)));
    if (missing.empty()) return;
    if (std::string notice = readFailureNotice(store); !notice.empty())
      fail(kumiRemoteError, "another rank failed during ", what, ": ", notice);
    if (cancel && cancel->load()) fail(kumiAborted, "aborted during ", what);
    if (deadline.expired()) {
      std::string names;
      for (const auto& k : missing) names += cat(names.empty() ? "" : ", ", k);
      fail(kumiTimeout, what, " did not complete before the deadline; still missing: ", names);
    }
  }
}

}  // namespace kumi
