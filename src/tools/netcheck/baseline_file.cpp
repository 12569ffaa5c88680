#include "tools/netcheck/baseline_file.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi::netcheck {
namespace {

constexpr const char* kHeader = "# kumi-netcheck baseline v1";

double positive(const std::string& token, const std::string& where, const char* what) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(token.c_str(), &end);
  KUMI_REQUIRE_ARG(end && *end == '\0' && errno == 0 && std::isfinite(v) && v >= 0, where, ": ", what, " '", token,
                   "' is not a non-negative number");
  return v;
}

}  // namespace

Baseline parseBaseline(const std::string& text, const std::string& source) {
  Baseline b;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++number;
    const std::string where = source + ":" + std::to_string(number);
    if (number == 1) {
      KUMI_REQUIRE_ARG(line == kHeader, source, " is not a kumi-netcheck baseline (its first line should be '", kHeader,
                       "'); write one with --save-baseline");
      header = true;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string src, dst, rail, transport, bw, lat, extra;
    fields >> src >> dst >> rail >> transport >> bw >> lat;
    KUMI_REQUIRE_ARG(!lat.empty() && !(fields >> extra), where,
                     ": expected 'src dst rail transport bandwidth latency', got '", line, "'");
    char* end = nullptr;
    const long r = std::strtol(rail.c_str(), &end, 10);
    KUMI_REQUIRE_ARG(end && *end == '\0' && r >= 0 && r < 1024, where, ": rail '", rail, "' is not a small integer");
    const auto key = std::make_tuple(src, dst, static_cast<int>(r), transport);
    KUMI_REQUIRE_ARG(!b.count(key), where, ": link ", src, " -> ", dst, " rail ", rail, " ", transport, " appears twice");
    b[key] = {positive(bw, where, "bandwidth"), positive(lat, where, "latency")};
  }
  KUMI_REQUIRE_ARG(header, source, " is empty; write a baseline with --save-baseline");
  return b;
}

std::string formatBaseline(const std::vector<LinkResult>& links, const std::vector<std::string>& names) {
  std::string out = std::string(kHeader) + "\n# src dst rail transport bandwidth_bytes_per_second latency_seconds\n";
  auto num = [](double v) { return formatted("%.6g", v); };
  for (const auto& l : links) {
    if (!l.error.empty()) continue;  // a failed link is no expectation
    out += names[static_cast<std::size_t>(l.key.src)] + " " + names[static_cast<std::size_t>(l.key.dst)] + " " +
           std::to_string(l.key.rail) + " " + l.key.transport + " " + num(l.bandwidth) + " " + num(l.latency) + "\n";
  }
  return out;
}

Baseline loadBaseline(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(kumiInvalidArgument, "--baseline ", path, ": cannot read: ", std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(f)), {});
  return parseBaseline(text, path);
}

}  // namespace kumi::netcheck
