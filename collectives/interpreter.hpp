// The reference interpreter: runs every rank's schedule in one process on plain memory, with
// in-order mailboxes standing in for connections. Tests check every algorithm with it for many
// world sizes, counts, types and ops in milliseconds, and it reports deadlocks, mismatched
// message sizes and steps left unrun.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives/prepared.hpp"

namespace kumi {

struct RankCall {
  const void* send;  // may point into recv (in place)
  void* recv;
};

// Returns "" on success, else a description of what went wrong.
std::string interpret(const std::vector<PreparedSchedule>& schedules, const std::vector<RankCall>& calls,
                      kumiDataType_t type, kumiRedOp_t op);

// Checks that every pair of steps touching overlapping memory, one of them writing, is ordered
// by the dependencies (transitively). In place, Send element i is Recv element
// i + sendOffsetFromRecv.
// Returns "" when the schedule is race-free.
std::string checkHazards(const PreparedSchedule& ps, bool inPlace, std::int64_t sendOffsetFromRecv);

}  // namespace kumi
