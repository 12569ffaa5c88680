#include "rendezvous/bootstrap.hpp"

#include <string_view>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "rendezvous/file_store.hpp"
#include "rendezvous/tcp_store_client.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace kumi {

namespace {
std::shared_ptr<TcpStoreServer> serveStore(const std::string& hostPort) {
  return Registry::instance().service<TcpStoreServer>("store-server:" + hostPort, [&] {
    auto [host, port] = splitHostPort(hostPort, "KUMI_STORE");
    auto addrs = resolve(host, port, "KUMI_STORE");
    std::shared_ptr<TcpStoreServer> server;
    try {
      server = std::make_shared<TcpStoreServer>(addrs.front());
    } catch (const Error& e) {
      // A service name (e.g. a Kubernetes Service) may resolve to an address this pod does not
      // own; then listen on every address of that family, as torch's store does.
      if (std::string(e.what()).find("Cannot assign requested address") == std::string::npos) throw;
      SockAddr any = addrs.front();
      auto fam = any.family();
      any = resolve(fam == AF_INET6 ? "::" : "0.0.0.0", port, "KUMI_STORE").front();
      server = std::make_shared<TcpStoreServer>(any);
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
  if (serve) serveStore(cfg.store);
  auto client = std::make_shared<TcpStoreClient>(cfg.store, deadline);
  return {client, client->serverAddress()};
}

void postAbort(Store& store, const std::string& message) {
  try {
    store.compareSet("abort", "", message);
  } catch (const Error&) {
    // The store may be gone too; the peers will see closed connections instead.
  }
}

void joinBarrier(Store& store, int rank, int worldSize, const std::string& what, const Deadline& deadline) {
  const std::string mine = std::to_string(worldSize);
  std::string agreed = store.compareSet("world_size", "", mine);
  if (agreed != mine) {
    std::string msg = cat("rank ", rank, " was started with world size ", worldSize, " but another rank with ",
                          agreed, ": all ranks must agree (check KUMI_WORLD_SIZE / -np)");
    postAbort(store, msg);
    fail(kumiInvalidArgument, msg);
  }
  store.set(cat("host/", rank), Registry::instance().hostname());
  std::vector<std::string> keys;
  for (int r = 0; r < worldSize; ++r) keys.push_back(cat(what, "/", r));
  for (;;) {
    auto slice = std::chrono::milliseconds(std::clamp(deadline.msLeft(), 1, 500));
    try {
      store.wait(keys, slice);
      break;
    } catch (const Error& e) {
      if (e.code() != kumiTimeout) throw;
    }
    if (store.check({"abort"})) fail(kumiRemoteError, "another rank failed during start-up: ", store.get("abort", Store::Timeout(1000)));
    if (deadline.expired()) {
      std::string missing;
      int count = 0;
      for (int r = 0; r < worldSize; ++r)
        if (!store.check({keys[static_cast<std::size_t>(r)]}) && ++count <= 32) missing += cat(missing.empty() ? "" : ", ", r);
      if (count > 32) missing += cat(" and ", count - 32, " more");
      fail(kumiTimeout, "rank ", rank, ": ", count, " of ", worldSize, " ranks never arrived at the rendezvous (",
           store.describe(), ") before the deadline: ranks ", missing);
    }
  }
  // Also agree at the end: a late rank with another world size must not slip through.
  if (store.get("world_size", Store::Timeout(1000)) != mine)
    fail(kumiInvalidArgument, "rank ", rank, ": ranks disagree on the world size");
}

}  // namespace kumi
