// A schedule prepared for execution: reverse dependency lists and per-channel step order,
// computed once when the schedule enters the cache, shared by the executor and the interpreter.
// Buffers resolves a Span to memory for one call.
#pragma once

#include <cstddef>
#include <vector>

#include "collectives/schedule.hpp"

namespace kumi {

struct PreparedSchedule {
  Schedule schedule;
  std::vector<std::uint32_t> depCount;          // per step
  std::vector<std::uint32_t> dependentsBegin;   // CSR: dependents of step i are
  std::vector<std::uint32_t> dependents;        // dependents[dependentsBegin[i] .. [i+1])
  // Channel c = (peer, direction); steps on it run in schedule order, since the bytes on a
  // connection arrive in the order they were sent.
  std::vector<int> channelOf;                   // per step, -1 for local steps
  std::vector<std::vector<std::uint32_t>> channelSteps;
  std::vector<int> channelPeer;
  std::vector<bool> channelIsRecv;
  std::vector<bool> channelReduces;  // has RecvReduce steps (needs a staging pool)
  std::vector<int> peers;  // sorted, unique: the connections this schedule needs
  std::uint64_t maxRecvReduceCount = 0;  // elements of the largest receive that reduces
  bool connected = false;  // the communicator has connected every peer of it (no need to ask again)

  explicit PreparedSchedule(Schedule s);
};

struct Buffers {
  const std::byte* send = nullptr;
  std::byte* recv = nullptr;
  std::byte* scratch = nullptr;
  std::size_t elemSize = 1;

  std::byte* at(const Span& s) const {
    const std::size_t off = static_cast<std::size_t>(s.offset) * elemSize;
    switch (s.buf) {
      case Buf::Send: return const_cast<std::byte*>(send) + off;
      case Buf::Recv: return recv + off;
      case Buf::Scratch: return scratch + off;
    }
    return nullptr;
  }
  std::size_t bytes(const Span& s) const { return static_cast<std::size_t>(s.count) * elemSize; }
};

}  // namespace kumi
