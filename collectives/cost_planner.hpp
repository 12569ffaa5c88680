// The planner: for each (collective, message size) a communicator meets, it runs every
// candidate algorithm's schedules, at a few pipeline slice sizes, through the simulator against
// the communicator's own host map and link model, and keeps the fastest. Decisions are cached
// per collective and power-of-two size class, so the simulation runs once per class, not per
// call. Every rank plans from the same inputs (rank 0's link model and KUMI_ALGO, shared at
// init), and the simulator is deterministic, so every rank picks the same schedule.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "collectives/planner.hpp"
#include "collectives/simulator.hpp"

namespace kumi {

// Simulates a call of `c` with `a` on every rank of `cluster` (count and slice in elements, as
// in ScheduleKey); with calls and warmup, the mean time of back-to-back calls (simulate()).
// nullopt when the schedules hold more than maxSteps steps in all; throws kumiInternalError
// when they deadlock or mismatch. The planner and kumi-sim both use it.
std::optional<double> simulateCall(const SimCluster& cluster, Collective c, Algorithm a, std::uint64_t count,
                                   std::size_t elemSize, std::uint64_t slice, std::uint64_t maxSteps, int calls = 1,
                                   int warmup = 0);

struct Plan {
  Algorithm algo = Algorithm::Ring;
  int sliceShift = 0;      // slice = the automatic slice (sliceElements) * 4^sliceShift
  double predicted = 0;    // seconds; 0 when there was nothing to compare
};

class Planner {
 public:
  Planner() = default;
  // Throws kumiInvalidArgument when the filter leaves a collective no algorithm that can serve
  // this host map (the user excluded every alternative); warns when it only names ones that
  // cannot, and plans among the others.
  Planner(SimCluster cluster, AlgorithmFilter filter, std::uint64_t chunkBytes);
  // The same candidates and slice setting priced on another cluster of the same host map (a
  // communicator's device links): the filter is not checked, nor warned about, a second time.
  Planner repriced(SimCluster cluster) const;

  // The plan for a call of `count` elements of `elemSize` bytes (per rank for allgather and
  // reduce_scatter, as in ScheduleKey).
  const Plan& plan(Collective c, std::uint64_t count, std::size_t elemSize);
  // The slice in elements that a plan gives this call.
  std::uint64_t slice(const Plan& p, Collective c, std::uint64_t count, std::size_t elemSize) const;

  // Predicted seconds of one candidate (tests, kumi-sim); nullopt when the simulation would be
  // too large to run inside a call (see kMaxSimulatedSteps).
  std::optional<double> predict(Collective c, Algorithm a, std::uint64_t count, std::size_t elemSize, int sliceShift) const;

  int worldSize() const { return static_cast<int>(cluster_.hostOf.size()); }
  const std::vector<Algorithm>& candidates(Collective c) const { return candidates_[static_cast<std::size_t>(c)]; }

 private:
  Plan decide(Collective c, std::uint64_t count, std::size_t elemSize) const;
  Plan ruleOfThumb(Collective c, std::uint64_t bytes) const;

  SimCluster cluster_;
  AlgorithmFilter filter_;
  std::uint64_t chunkBytes_ = 0;
  int hosts_ = 1;
  // One slot per Collective: AllToAll is the last of them.
  static constexpr std::size_t kCollectives = static_cast<std::size_t>(Collective::AllToAll) + 1, kSizeClasses = 65;
  std::array<std::vector<Algorithm>, kCollectives> candidates_;
  std::array<std::array<std::optional<Plan>, kSizeClasses>, kCollectives> cache_;
};

// A communicator's two: calls on host buffers, and calls on device buffers (other links, the
// GPU's rates; LinkModel's device section).
struct Planners {
  Planner host, device;
};

}  // namespace kumi
