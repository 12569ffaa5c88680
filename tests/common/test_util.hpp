// Helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <kumi/kumi.hpp>

#include <string>

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

}  // namespace kumi::test
