// The element-wise semantics of a reduction, one definition for the CPU kernels' scalar paths
// (core/reduce_kernels.cpp) and the CUDA kernels (gpu/reduce_kernels.cu): integers wrap on
// overflow, min and max propagate NaN. kumiAvg reduces as kumiSum.
#pragma once

#include <kumi/kumi.h>

#include <type_traits>

#include "core/host_device.hpp"

namespace kumi {

template <class T>
KUMI_HOST_DEVICE inline T scalarOp(kumiRedOp_t op, T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;  // wrap on overflow without undefined behaviour
    switch (op) {
      case kumiProd: return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
      case kumiMin: return a < b ? a : b;
      case kumiMax: return a > b ? a : b;
      default: return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    }
  } else {
    switch (op) {
      case kumiProd: return a * b;
      case kumiMin: return (a != a) ? a : (b != b) ? b : (a < b ? a : b);
      case kumiMax: return (a != a) ? a : (b != b) ? b : (a > b ? a : b);
      default: return a + b;
    }
  }
}

}  // namespace kumi
