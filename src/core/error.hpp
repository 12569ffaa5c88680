// Internal error handling: every failure is a kumi::Error (the public C++ exception type) with
// a result code and a message that names the problem. The C API turns it into kumiResult_t.
#pragma once

#include <kumi/kumi.hpp>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>

namespace kumi {

// Concatenates anything streamable; the one string-building helper of the project.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
[[noreturn]] void fail(kumiResult_t code, const Args&... args) {
  throw Error(code, cat(args...));
}

// Failure of an OS call: appends strerror(errno).
template <class... Args>
[[noreturn]] void failErrno(const Args&... args) {
  int e = errno;
  throw Error(kumiSystemError, cat(args..., ": ", std::strerror(e)));
}

}  // namespace kumi

#define KUMI_REQUIRE_ARG(cond, ...) \
  do {                              \
    if (!(cond)) ::kumi::fail(kumiInvalidArgument, __VA_ARGS__); \
  } while (0)
