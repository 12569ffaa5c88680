// Reading KUMI_* environment variables. Malformed values are errors that name the variable,
// never silently replaced by a default.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kumi {

std::optional<std::string> envString(const char* name);  // unset or empty -> nullopt
std::optional<long long> envInt(const char* name);         // decimal integer
std::optional<int> envIntIn(const char* name, long long lo, long long hi);  // and within [lo, hi]
std::optional<double> envDouble(const char* name);         // seconds etc.
std::optional<std::uint64_t> envBytes(const char* name);   // "512K", "4M", "1G" or plain bytes

// Parses "4M"-style sizes (K/M/G/T, powers of 1024); nullopt when malformed.
std::optional<std::uint64_t> parseBytes(const std::string& text);

}  // namespace kumi
