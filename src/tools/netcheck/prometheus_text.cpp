#include "tools/netcheck/prometheus_text.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "core/error.hpp"

namespace kumi::netcheck {
namespace {

bool nameChars(const std::string& s, bool colon) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string escape(const std::string& v, bool quotes) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quotes) out += "\\\"";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

bool validMetricName(const std::string& name) { return nameChars(name, true); }
bool validLabelName(const std::string& name) { return nameChars(name, false) && name.rfind("__", 0) != 0; }

std::string exposition(const std::vector<MetricFamily>& families) {
  std::string out;
  std::set<std::string> seen;
  for (const auto& f : families) {
    KUMI_REQUIRE_ARG(validMetricName(f.name), "metric name '", f.name, "' is not a valid Prometheus name");
    KUMI_REQUIRE_ARG(seen.insert(f.name).second, "metric '", f.name, "' appears twice");
    out += "# HELP " + f.name + " " + escape(f.help, false) + "\n";
    out += "# TYPE " + f.name + " " + f.type + "\n";
    for (const auto& s : f.samples) {
      out += f.name;
      if (!s.labels.empty()) {
        out += "{";
        for (std::size_t i = 0; i < s.labels.size(); ++i) {
          const auto& [k, v] = s.labels[i];
          KUMI_REQUIRE_ARG(validLabelName(k), "label name '", k, "' of metric '", f.name, "' is not valid");
          out += (i ? "," : "") + k + "=\"" + escape(v, true) + "\"";
        }
        out += "}";
      }
      out += ' ';
      out += number(s.value);
      out += '\n';
    }
  }
  return out;
}

void writeFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail(kumiSystemError, "cannot write ", tmp, ": ", std::strerror(errno));
    f << text;
    f.flush();
    if (!f) fail(kumiSystemError, "writing ", tmp, " failed: ", std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(kumiSystemError, "cannot move ", tmp, " to ", path, ": ", std::strerror(e));
  }
}

}  // namespace kumi::netcheck
