#include "core/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"

namespace kumi {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int SockAddr::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void SockAddr::setPort(int p) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(static_cast<uint16_t>(p));
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(static_cast<uint16_t>(p));
}

std::string SockAddr::host() const {
  char buf[INET6_ADDRSTRLEN + 1] = {};
  if (family() == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
  else if (family() == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf, sizeof buf);
  return buf;
}

std::string SockAddr::str() const {
  return family() == AF_INET6 ? cat('[', host(), "]:", port()) : cat(host(), ':', port());
}

bool SockAddr::isLoopback() const {
  if (family() == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr) >> 24) == 127;
  if (family() == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  return false;
}

std::pair<std::string, int> splitHostPort(const std::string& text, const char* what) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      fail(kumiInvalidArgument, what, "='", text, "' is not [ipv6]:port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
      fail(kumiInvalidArgument, what, "='", text, "' is not host:port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos)
      fail(kumiInvalidArgument, what, "='", text, "': write IPv6 addresses as [addr]:port");
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535)
    fail(kumiInvalidArgument, what, "='", text, "': port '", port, "' is not in [0, 65535]");
  return {host, static_cast<int>(p)};
}

std::string joinHostPort(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? cat('[', host, "]:", port) : cat(host, ':', port);
}

std::vector<SockAddr> resolve(const std::string& host, int port, const char* what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) fail(kumiSystemError, what, ": cannot resolve '", host, "': ", ::gai_strerror(rc));
  std::vector<SockAddr> out;
  for (auto* ai = res; ai; ai = ai->ai_next) {
    SockAddr a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    a.setPort(port);
    bool dup = std::any_of(out.begin(), out.end(), [&](const SockAddr& b) { return b.str() == a.str(); });
    if (!dup) out.push_back(a);
  }
  ::freeaddrinfo(res);
  if (out.empty()) fail(kumiSystemError, what, ": '", host, "' has no address");
  return out;
}

Fd listenOn(const SockAddr& addr, int backlog, const char* what) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) failErrno(what, ": socket()");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), addr.sa(), addr.length) != 0) {
    if (errno == EADDRINUSE)
      fail(kumiSystemError, what, ": cannot listen on ", addr.str(),
           ": address already in use (another job or process holds this port)");
    failErrno(what, ": cannot bind ", addr.str());
  }
  if (::listen(fd.get(), backlog) != 0) failErrno(what, ": listen on ", addr.str());
  return fd;
}

SockAddr localAddress(int fd) {
  SockAddr a;
  a.length = sizeof a.storage;
  ::getsockname(fd, a.sa(), &a.length);
  return a;
}

SockAddr peerAddress(int fd) {
  SockAddr a;
  a.length = sizeof a.storage;
  ::getpeername(fd, a.sa(), &a.length);
  return a;
}

void setNonBlocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void setHeartbeat(int fd, int seconds) {
  if (seconds <= 0) return;
  int on = 1, count = 3;
  unsigned int userTimeoutMs = static_cast<unsigned int>(seconds) * 4000u;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &seconds, sizeof seconds);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &seconds, sizeof seconds);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeoutMs, sizeof userTimeoutMs);
}

void setBufferSizes(int fd, std::size_t bytes) {
  if (bytes == 0) return;
  int v = static_cast<int>(std::min<std::size_t>(bytes, 1u << 30));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

Fd tryConnect(const SockAddr& addr, const Deadline& deadline, std::string* error) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    *error = cat("socket(): ", std::strerror(errno));
    return Fd();
  }
  if (::connect(fd.get(), addr.sa(), addr.length) != 0) {
    if (errno != EINPROGRESS) {
      *error = std::strerror(errno);
      return Fd();
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int rc;
    do rc = ::poll(&p, 1, std::max(1, deadline.msLeft()));
    while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
      *error = "connect timed out";
      return Fd();
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
      *error = std::strerror(soerr);
      return Fd();
    }
  }
  setNonBlocking(fd.get(), false);
  setNoDelay(fd.get());
  return fd;
}

Fd connectWithRetry(const std::vector<SockAddr>& addrs, const Deadline& deadline, const std::string& what,
                    const std::atomic<bool>* cancel) {
  auto backoff = std::chrono::milliseconds(10);
  std::string lastError = "no address";
  int attempts = 0;
  for (;;) {
    for (const auto& a : addrs) {
      ++attempts;
      // One silent address (e.g. a filtered IPv6 record) must not eat the whole deadline.
      Fd fd = tryConnect(a, deadline.earlier(Deadline::after(5)), &lastError);
      if (fd.valid()) return fd;
      lastError = cat(a.str(), ": ", lastError);
    }
    if (cancel && cancel->load()) fail(kumiAborted, what, ": interrupted");
    if (deadline.expired())
      fail(kumiTimeout, what, ": could not connect after ", attempts, " attempts (last error: ", lastError, ")");
    if (attempts == static_cast<int>(addrs.size()) * 3) KUMI_INFO(what, ": still trying to connect (", lastError, ")");
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(backoff, std::chrono::milliseconds(deadline.msLeft() + 1)));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

namespace {
// Waits for fd to be ready for `events` until the deadline; false on timeout.
bool waitReady(int fd, short events, const Deadline& deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    int rc = ::poll(&p, 1, deadline.msLeft());
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}
}  // namespace

void writeFull(int fd, const void* data, std::size_t n, const Deadline& deadline, const std::string& what) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitReady(fd, POLLOUT, deadline)) fail(kumiTimeout, what, ": send timed out");
      continue;
    }
    fail(kumiRemoteError, what, ": connection lost while sending (", std::strerror(errno), ")");
  }
}

void readFull(int fd, void* data, std::size_t n, const Deadline& deadline, const std::string& what) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) fail(kumiRemoteError, what, ": connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!waitReady(fd, POLLIN, deadline)) fail(kumiTimeout, what, ": no reply before the deadline");
      continue;
    }
    fail(kumiRemoteError, what, ": connection lost while receiving (", std::strerror(errno), ")");
  }
}

bool matchesIfname(const std::string& specIn, const std::string& ifname) {
  std::string spec = specIn;
  bool exclude = false, exact = false;
  if (!spec.empty() && spec[0] == '^') { exclude = true; spec.erase(0, 1); }
  if (!spec.empty() && spec[0] == '=') { exact = true; spec.erase(0, 1); }
  bool matched = false;
  for (const std::string& item : splitList(spec, ','))
    if (!item.empty() && (exact ? ifname == item : ifname.compare(0, item.size(), item) == 0)) matched = true;
  return exclude ? !matched : matched;
}

std::vector<Interface> listInterfaces(int family) {
  std::vector<Interface> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (auto* ifa = list; ifa; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP)) continue;
    int fam = ifa->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    if (family != AF_UNSPEC && fam != family) continue;
    Interface i;
    i.name = ifa->ifa_name;
    i.addr.length = fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::memcpy(&i.addr.storage, ifa->ifa_addr, i.addr.length);
    if (fam == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&reinterpret_cast<sockaddr_in6*>(&i.addr.storage)->sin6_addr))
      continue;  // link-local needs a scope id per peer; skip as NCCL does
    i.addr.setPort(0);
    out.push_back(i);
  }
  ::freeifaddrs(list);
  return out;
}

SockAddr localAddressToward(const SockAddr& remote) {
  Fd fd(::socket(remote.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), remote.sa(), remote.length) != 0)
    failErrno("cannot find a local address toward ", remote.str());
  SockAddr a = localAddress(fd.get());
  a.setPort(0);
  return a;
}

SockAddr chooseListenAddress(const std::string& ifnameSpec, const SockAddr* storeAddr) {
  if (!ifnameSpec.empty()) {
    auto all = listInterfaces(AF_UNSPEC);
    // Prefer IPv4 among matching interfaces, as NCCL does, unless only IPv6 matches.
    for (int fam : {AF_INET, AF_INET6})
      for (const auto& i : all)
        if (i.addr.family() == fam && matchesIfname(ifnameSpec, i.name)) {
          KUMI_INFO("using interface ", i.name, " ", i.addr.host(), " (KUMI_SOCKET_IFNAME=", ifnameSpec, ")");
          return i.addr;
        }
    std::string names;
    for (const auto& i : all) names += cat(names.empty() ? "" : ", ", i.name);
    fail(kumiInvalidArgument, "KUMI_SOCKET_IFNAME='", ifnameSpec, "' matches no interface that is up (have: ",
         names, ")");
  }
  if (storeAddr != nullptr) {
    SockAddr a = localAddressToward(*storeAddr);
    KUMI_INFO("using local address ", a.host(), " (the route toward the store ", storeAddr->str(), ")");
    return a;
  }
  for (const auto& i : listInterfaces(AF_INET))
    if (!i.addr.isLoopback() && i.name.rfind("docker", 0) != 0) return i.addr;
  auto lo = resolve("127.0.0.1", 0, "loopback");
  return lo.front();
}

}  // namespace kumi
