// Pushing metrics to a Prometheus Pushgateway: for jobs that end before any scrape would find
// them (a CronJob's netcheck run). HTTP/1.1 PUT over a plain socket, nothing else is needed.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kumi::netcheck {

struct PushTarget {
  std::string host;
  int port = 9091;
  std::string path;  // /metrics/job/<job>[/<label>/<value>...], values encoded
};

// From "http://host[:port][/prefix]" and the grouping key (job first). Label values that are not
// plain path characters travel base64url-encoded (`name@base64/...`), as the Pushgateway expects
// for values with slashes. Throws kumiInvalidArgument naming what is wrong with the URL.
PushTarget pushTarget(const std::string& url, const std::string& job,
                      const std::vector<std::pair<std::string, std::string>>& grouping);

// PUT body to the target (replacing the group's metrics). Throws kumiRemoteError with the
// address and the gateway's status line or the connection error; kumiTimeout past `seconds`.
void push(const PushTarget& target, const std::string& body, double seconds);

std::string base64Url(const std::string& bytes);

}  // namespace kumi::netcheck
