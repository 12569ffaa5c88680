#include "tools/netcheck/pushgateway.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/socket.hpp"

namespace kumi::netcheck {
namespace {

bool plain(const std::string& v) {
  if (v.empty()) return false;
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

std::string segment(const std::string& name, const std::string& value) {
  return plain(value) ? "/" + name + "/" + value : "/" + name + "@base64/" + (value.empty() ? "=" : base64Url(value));
}

}  // namespace

std::string base64Url(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

PushTarget pushTarget(const std::string& url, const std::string& job,
                      const std::vector<std::pair<std::string, std::string>>& grouping) {
  const std::string scheme = "http://";
  KUMI_REQUIRE_ARG(url.rfind(scheme, 0) == 0, "--pushgateway '", url,
                   "': expected http://host[:port][/path] (https is not supported; use a sidecar or the metrics file)");
  std::string rest = url.substr(scheme.size());
  std::string prefix;
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    prefix = rest.substr(slash);
    rest = rest.substr(0, slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  }
  KUMI_REQUIRE_ARG(!rest.empty(), "--pushgateway '", url, "': no host");
  PushTarget t;
  const bool hasPort = rest.back() != ']' && rest.find(':') != std::string::npos &&
                       (rest.front() == '[' || rest.find(':') == rest.rfind(':'));
  if (hasPort) {
    auto [host, port] = splitHostPort(rest, "--pushgateway");
    t.host = host;
    t.port = port;
  } else {
    t.host = rest.front() == '[' ? rest.substr(1, rest.size() - 2) : rest;
  }
  KUMI_REQUIRE_ARG(!job.empty(), "--pushgateway: the job name is empty");
  t.path = prefix + "/metrics" + segment("job", job);
  for (const auto& [k, v] : grouping) t.path += segment(k, v);
  return t;
}

void push(const PushTarget& t, const std::string& body, double seconds) {
  const Deadline deadline = Deadline::after(seconds);
  const std::string where = "pushgateway " + joinHostPort(t.host, t.port);
  std::string error = "no address";
  Fd fd;
  for (const SockAddr& a : resolve(t.host, t.port, "--pushgateway")) {
    fd = tryConnect(a, deadline, &error);
    if (fd.valid()) break;
  }
  if (!fd.valid()) fail(kumiRemoteError, where, ": cannot connect: ", error);
  const std::string request = "PUT " + t.path + " HTTP/1.1\r\nHost: " + joinHostPort(t.host, t.port) +
                              "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  writeFull(fd.get(), request.data(), request.size(), deadline, where);
  // The status line is all we need; the connection closes after the reply.
  std::string reply;
  char buf[1024];
  while (reply.find("\r\n") == std::string::npos && reply.size() < 8192) {
    pollfd p{fd.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, deadline.msLeft());
    if (r == 0) fail(kumiTimeout, where, ": no reply within ", seconds, " s");
    if (r < 0 && errno == EINTR) continue;
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(kumiRemoteError, where, ": reading the reply: ", std::strerror(errno));
    if (n == 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  const std::string status = reply.substr(0, reply.find("\r\n"));
  // "HTTP/1.1 200 OK": a 2xx code is success.
  const auto sp = status.find(' ');
  if (sp == std::string::npos || status.size() < sp + 2 || status[sp + 1] != '2')
    fail(kumiRemoteError, where, " refused the metrics (PUT ", t.path, "): ", status.empty() ? "no reply" : status);
}

}  // namespace kumi::netcheck
