#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <strings.h>

#include "core/registry.hpp"

namespace kumi {
namespace {

LogLevel parseLevel() {
  const char* v = std::getenv("KUMI_DEBUG");
  if (v == nullptr || *v == '\0') return LogLevel::Warn;
  if (strcasecmp(v, "NONE") == 0 || strcasecmp(v, "OFF") == 0) return LogLevel::None;
  if (strcasecmp(v, "WARN") == 0 || strcasecmp(v, "VERSION") == 0) return LogLevel::Warn;
  if (strcasecmp(v, "INFO") == 0) return LogLevel::Info;
  if (strcasecmp(v, "TRACE") == 0) return LogLevel::Trace;
  std::fprintf(stderr, "[kumi] WARN KUMI_DEBUG='%s' is not one of NONE, WARN, INFO, TRACE; using WARN\n", v);
  return LogLevel::Warn;
}

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::Warn: return "WARN";
    case LogLevel::Info: return "INFO";
    case LogLevel::Trace: return "TRACE";
    default: return "";
  }
}

}  // namespace

bool logEnabled(LogLevel level) {
  static const LogLevel threshold = parseLevel();
  return level <= threshold && level != LogLevel::None;
}

void setLogRank(int rank) { Registry::instance().logRank.store(rank); }

void logLine(LogLevel level, std::string_view message) {
  auto& reg = Registry::instance();
  std::string line = cat(reg.hostname(), ':', ::getpid(), ":rank ", reg.logRank.load(), " [kumi] ",
                         levelName(level), ' ', message, '\n');
  // One write per line keeps lines from different threads whole.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace kumi
