// Socket plumbing shared by the store and the TCP transport: RAII descriptors, addresses
// (IPv4 and IPv6), connect/accept with deadlines, and interface selection with NCCL's syntax.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/deadline.hpp"

namespace kumi {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  int port() const;
  void setPort(int port);
  std::string host() const;  // numeric
  std::string str() const;   // "1.2.3.4:5" or "[::1]:5"
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage); }
  bool isLoopback() const;
};

// "host:port", "[v6]:port". Throws kumiInvalidArgument naming `what` when malformed.
std::pair<std::string, int> splitHostPort(const std::string& text, const char* what);
// The inverse: "host:port", or "[v6]:port" for an IPv6 address.
std::string joinHostPort(const std::string& host, int port);
// Resolves a name (DNS or numeric) to its addresses; throws when it cannot.
std::vector<SockAddr> resolve(const std::string& host, int port, const char* what);

// Listening socket bound to addr (port 0 picks one). A busy port is a clear error.
Fd listenOn(const SockAddr& addr, int backlog, const char* what);
SockAddr localAddress(int fd);
SockAddr peerAddress(int fd);

// Connects once (non-blocking connect + poll until deadline); errno-style failure returns
// invalid Fd and sets error text.
Fd tryConnect(const SockAddr& addr, const Deadline& deadline, std::string* error);
// Retries with exponential backoff (10 ms .. 1 s) until the deadline: the peer may not be up yet.
// A set `cancel` flag ends the retries with kumiAborted.
Fd connectWithRetry(const std::vector<SockAddr>& addrs, const Deadline& deadline, const std::string& what,
                    const std::atomic<bool>* cancel = nullptr);

void setNonBlocking(int fd, bool on);
void setNoDelay(int fd);
// Kernel heartbeats on a connection: an idle connection is probed every `seconds` and given up
// after three unanswered probes, and data unacknowledged for four periods fails it too, so a
// peer whose host died or was cut off (no FIN ever comes) is found in ~4 periods, not at the
// deadline. 0 leaves the kernel defaults (two hours).
void setHeartbeat(int fd, int seconds);
void setBufferSizes(int fd, std::size_t bytes);  // 0 keeps kernel autotuning

// Blocking full transfers bounded by a deadline; throw kumiTimeout / kumiRemoteError.
void writeFull(int fd, const void* data, std::size_t n, const Deadline& deadline, const std::string& what);
void readFull(int fd, void* data, std::size_t n, const Deadline& deadline, const std::string& what);

// Interface selection, NCCL_SOCKET_IFNAME syntax: comma-separated prefixes; a leading '^'
// excludes, a leading '=' matches names exactly ("^=docker0,lo" combines both).
bool matchesIfname(const std::string& spec, const std::string& ifname);
struct Interface {
  std::string name;
  SockAddr addr;
};
std::vector<Interface> listInterfaces(int family);  // AF_INET, AF_INET6 or AF_UNSPEC; up ones only
// The local address the kernel would use to reach remote (no packet is sent).
SockAddr localAddressToward(const SockAddr& remote);
// Address to listen on for peers: KUMI_SOCKET_IFNAME when given, else the one toward the store
// (so that a job on loopback stays on loopback), else the first non-loopback interface.
SockAddr chooseListenAddress(const std::string& ifnameSpec, const SockAddr* storeAddr);

}  // namespace kumi
