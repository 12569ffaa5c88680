// Slurm's compressed lists: host lists ("node[01-03,07],gpu5") and task counts per node
// ("2(x3),1"). Pure functions; malformed input is a kumi::Error naming `what` (the variable).
#pragma once

#include <string>
#include <vector>

namespace kumi::launch {

// "node[01-03,07],gpu5" -> {node01, node02, node03, node07, gpu5}. Several bracket groups in one
// name multiply out ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2), as Slurm does. A range keeps the
// width of its lower bound ("[08-10]" -> 08 09 10). At most `limit` names.
std::vector<std::string> expandHostlist(const std::string& list, const std::string& what = "host list",
                                        std::size_t limit = 1u << 20);

// "2(x3),1" -> {2, 2, 2, 1} (SLURM_STEP_TASKS_PER_NODE).
std::vector<long long> expandTaskCounts(const std::string& list, const std::string& what = "task counts",
                                        std::size_t limit = 1u << 20);

}  // namespace kumi::launch
