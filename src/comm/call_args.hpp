// One call's arguments as the C API received them.
#pragma once

#include <kumi/kumi.h>

#include <cstdint>

#include "collectives/schedule.hpp"

namespace kumi {

struct CallArgs {
  Collective coll;
  const void* send = nullptr;
  void* recv = nullptr;
  std::uint64_t count = 0;
  kumiDataType_t type = kumiFloat32;
  kumiRedOp_t op = kumiSum;
  int root = 0;  // root, or the peer of send/recv
};

}  // namespace kumi
