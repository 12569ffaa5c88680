// Helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <kumi/kumi.hpp>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "core/deadline.hpp"

namespace kumi::test {

// Runs f, which must throw kumi::Error with `code`; returns the message ("" if it did not throw).
template <class F>
std::string errorOf(F&& f, kumiResult_t code = kumiInvalidArgument) {
  try {
    f();
  } catch (const kumi::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a kumi::Error";
  return "";
}

// True when the peer closes fd (EOF or reset) within `seconds`; discards what arrives.
inline bool closedByPeer(int fd, double seconds) {
  auto deadline = Deadline::after(seconds);
  char buf[4096];
  while (!deadline.expired()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, std::max(1, deadline.msLeft())) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return true;
  }
  return false;
}

}  // namespace kumi::test
