// Algorithm names, KUMI_ALGO, and the dispatch from (collective, algorithm) to a schedule
// generator. KUMI_ALGO (NCCL syntax: "allreduce:ring;broadcast:chain", a plain list for every
// collective, "^" to exclude) restricts the candidates among which the cost model
// (cost_planner.hpp) chooses.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "collectives/schedule.hpp"

namespace kumi {

enum class Algorithm : std::uint8_t {
  Ring,
  RecursiveDoubling,
  Chain,
  Dissemination,
  Direct,
  Hierarchical,
  Tree,          // double binary tree
  Rabenseifner,  // recursive halving + doubling
  Binomial,
  Pairwise,  // all-to-all: one peer per step
};
const char* algorithmName(Algorithm a);

class AlgorithmFilter {
 public:
  AlgorithmFilter() = default;
  // Throws kumiInvalidArgument naming the unknown collective or algorithm.
  explicit AlgorithmFilter(const std::string& spec);
  bool allows(Collective c, Algorithm a) const;
  // Whether a "^" rule names `a` for `c` (a positive list only prefers others).
  bool excludes(Collective c, Algorithm a) const;
  const std::string& spec() const { return spec_; }

 private:
  struct Rule {
    bool anyCollective;
    Collective coll;
    bool exclude;
    std::vector<Algorithm> algos;
  };
  std::string spec_;
  std::vector<Rule> rules_;
};

// The algorithms that implement a collective, best-first for large messages.
std::span<const Algorithm> algorithmsFor(Collective c);

Schedule buildSchedule(const ScheduleKey& key, Algorithm a);

// Whether `a` can serve `c` on a host map whose hosts are (or are not) all of one size: the
// hierarchical allgather needs equal hosts; everything else serves any map.
inline bool canServe(Collective c, Algorithm a, bool evenHosts) {
  return !(a == Algorithm::Hierarchical && c == Collective::AllGather && !evenHosts);
}

// Pipeline slice in elements for a call (chunkBytes: KUMI_CHUNK_SIZE, 0 = automatic). The
// communicator and kumi-sim use the same, so predictions run the schedules that run for real.
std::uint64_t sliceElements(Collective c, Algorithm a, std::uint64_t count, std::size_t elemSize, int worldSize,
                            std::uint64_t chunkBytes);

}  // namespace kumi
