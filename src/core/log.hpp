// Logging controlled by KUMI_DEBUG (WARN, INFO, TRACE; default WARN). Every line starts with
// host, pid and rank so that interleaved output of many ranks stays readable.
#pragma once

#include <string_view>

#include "core/error.hpp"

namespace kumi {

enum class LogLevel { None = 0, Warn = 1, Info = 2, Trace = 3 };

bool logEnabled(LogLevel level);
void logLine(LogLevel level, std::string_view message);
// The rank printed in the prefix (the process's rank in its first communicator).
void setLogRank(int rank);

}  // namespace kumi

#define KUMI_LOG(level, ...)                                                   \
  do {                                                                         \
    if (::kumi::logEnabled(level)) ::kumi::logLine(level, ::kumi::cat(__VA_ARGS__)); \
  } while (0)
#define KUMI_WARN(...) KUMI_LOG(::kumi::LogLevel::Warn, __VA_ARGS__)
#define KUMI_INFO(...) KUMI_LOG(::kumi::LogLevel::Info, __VA_ARGS__)
#define KUMI_TRACE(...) KUMI_LOG(::kumi::LogLevel::Trace, __VA_ARGS__)
