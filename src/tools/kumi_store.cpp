// kumi-store: the rendezvous store as a standalone server, for jobs whose rank 0 should not
// host it (set KUMI_STORE_SERVE=0 in the ranks).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/file_limit.hpp"
#include "core/secret.hpp"
#include "core/socket.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace {
kumi::TcpStoreServer* running = nullptr;
void onSignal(int) {
  if (running) running->stop();
}

void reportFileLimit() {
  const kumi::FileLimit l = kumi::raiseFileLimit();
  if (l.raised)
    std::printf("kumi-store: file descriptor limit raised from %s to %s (the hard limit): room for %s ranks\n",
                l.before.c_str(), l.now.c_str(), l.room.c_str());
  else
    std::printf("kumi-store: file descriptor limit %s: room for %s ranks (raise it with ulimit -n for more)\n",
                l.now.c_str(), l.room.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  std::string listen = "0.0.0.0:29400";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--listen" || a == "-l") && i + 1 < argc) {
      listen = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: kumi-store [--listen HOST:PORT]   (default 0.0.0.0:29400)\n"
                  "Serves the kumi rendezvous store until SIGINT or SIGTERM. With KUMI_SECRET or\n"
                  "KUMI_SECRET_FILE set, only clients that prove they know the secret are served.\n");
      return 0;
    } else {
      std::fprintf(stderr, "kumi-store: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  // Before the server starts: it sizes its handshake cap from the limit.
  reportFileLimit();
  try {
    auto [host, port] = kumi::splitHostPort(listen, "--listen");
    const std::string secret = kumi::secretFromEnv();
    kumi::TcpStoreServer server(kumi::resolve(host, port, "--listen").front(), secret);
    std::printf("kumi-store: serving on %s%s\n", server.address().str().c_str(),
                secret.empty() ? "" : " (clients must prove KUMI_SECRET)");
    const std::string bound = server.address().host();
    if (secret.empty() && (bound == "0.0.0.0" || bound == "::"))
      std::fprintf(stderr,
                   "kumi-store: warning: listening on every interface without a secret: anyone who can reach "
                   "this port can read and write the job's keys (set KUMI_SECRET or KUMI_SECRET_FILE here and "
                   "in the ranks, or --listen on one address)\n");
    std::fflush(stdout);
    running = &server;
    signal(SIGINT, onSignal);
    signal(SIGTERM, onSignal);
    server.serve();
    running = nullptr;
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "kumi-store: %s\n", e.what());
    return 1;
  }
  return 0;
}
