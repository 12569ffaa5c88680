// Inputs and expected outputs of collective tests. Small integers keep every reduction exact in
// every type and in every order of combination; products use only 1 and 2 (powers of two).
#pragma once

#include <kumi/kumi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/element.hpp"

namespace kumi::test {

inline double inputValue(int rank, std::uint64_t i, kumiRedOp_t op) {
  if (op == kumiProd) return ((rank * 5 + static_cast<int>(i % 97)) % 4 == 0) ? 2.0 : 1.0;
  return static_cast<double>((static_cast<std::uint64_t>(rank) * 7 + i * 3) % 9 + 1);
}

// Element i of the reduction over n ranks, as type t holds it.
inline double expectedReduction(kumiDataType_t t, kumiRedOp_t op, int n, std::uint64_t i) {
  double acc = inputValue(0, i, op);
  for (int r = 1; r < n; ++r) {
    double v = inputValue(r, i, op);
    acc = op == kumiProd ? acc * v : op == kumiMin ? std::min(acc, v) : op == kumiMax ? std::max(acc, v) : acc + v;
  }
  if (op == kumiAvg) {
    acc = t <= kumiUint64 ? std::trunc(acc / n) : acc / n;
    if (t != kumiFloat64) acc = static_cast<float>(acc);
  }
  return roundToType(t, acc);
}

}  // namespace kumi::test
