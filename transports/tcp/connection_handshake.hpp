// The two ends of the TCP transport's connection handshake (handshake_check.hpp has the
// messages), over sockets.
//
// The acceptor never blocks on one connection: it greets each new connection at once, reads the
// initiators' bytes as they come on all of them together (poll), and drops a connection that has
// not completed its handshake within the handshake time. At most kMaxPending connections may be
// in the handshake; a newer one pushes out the oldest. So a stranger that floods the port, holds
// connections open in silence, or sends garbage costs the job a few file descriptors for a few
// seconds, and never holds up a real peer. Warnings about strangers are rate-limited.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "transports/tcp/handshake_check.hpp"

namespace kumi::tcp {

struct AcceptorOptions {
  std::string secret;           // "" = none required
  double handshakeSeconds = 30;
  HelloExpect expect;
  // For refusal messages: who this rank is.
  std::string jobId;
  int generation = 0;
};

// What the transport decides about a valid (and, with a secret, authenticated) Hello.
struct AcceptorHooks {
  // The HelloStatus to answer; kAccepted may reserve the peer (its set is being built).
  std::function<std::uint32_t(const Hello&, const std::string& from)> decide;
  // A kAccepted answer could not be delivered: release what decide() reserved.
  std::function<void(const Hello&)> undo;
  // A kAccepted answer went out: the socket belongs to the peer now.
  std::function<void(const Hello&, Fd)> accepted;
};

class Acceptor {
 public:
  // At most this many connections in the handshake, and never more than an eighth of the
  // process's file-descriptor limit; beyond that the oldest is dropped.
  static constexpr std::size_t kMaxPending = 128;

  // listenFd and stopFd stay owned by the caller; run() returns once stopFd is readable.
  Acceptor(int listenFd, int stopFd, AcceptorOptions options, AcceptorHooks hooks);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;
  void run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The initiator's side on a connected socket: reads the greeting, sends Hello and proof, reads
// the answer and checks the acceptor's proof. Returns the acceptor's HelloStatus. Throws
// kumiRemoteError naming `who` when the peer is not a kumi rank of this version, disagrees on
// having a secret, or cannot prove it knows it; kumiTimeout/kumiRemoteError when the connection
// stalls or breaks (writeFull/readFull).
std::uint32_t initiateHandshake(int fd, const Hello& hello, const std::string& secret, const Deadline& deadline,
                                const std::string& who);

}  // namespace kumi::tcp
