// Schedule generators. Each returns the steps of one rank for one call; see schedule.hpp.
#pragma once

#include <vector>

#include "collectives/schedule.hpp"

namespace kumi {

// One generator per (collective, algorithm); planner.hpp chooses and dispatches
// (buildSchedule(key, algorithm)).
Schedule ringAllReduce(const ScheduleKey& key);
Schedule recursiveDoublingAllReduce(const ScheduleKey& key);
Schedule hierarchicalAllReduce(const ScheduleKey& key);  // needs key.hostOf
Schedule hierarchicalAllGather(const ScheduleKey& key);  // needs key.hostOf, even hosts
// Whether every host of the map holds the same number of ranks.
bool evenHosts(const std::vector<int>& hostOf);
Schedule doubleBinaryTreeAllReduce(const ScheduleKey& key);
Schedule rabenseifnerAllReduce(const ScheduleKey& key);
Schedule rabenseifnerReduceScatter(const ScheduleKey& key);
Schedule recursiveDoublingAllGather(const ScheduleKey& key);
Schedule binomialBroadcast(const ScheduleKey& key);
Schedule binomialReduce(const ScheduleKey& key);
Schedule ringReduceScatter(const ScheduleKey& key);
Schedule ringAllGather(const ScheduleKey& key);
Schedule chainBroadcast(const ScheduleKey& key);
Schedule chainReduce(const ScheduleKey& key);
Schedule disseminationBarrier(const ScheduleKey& key);
Schedule directSendRecv(const ScheduleKey& key);
Schedule pairwiseAllToAll(const ScheduleKey& key);  // out of place only

}  // namespace kumi
