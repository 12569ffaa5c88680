#include "collectives/cost_planner.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>

#include "collectives/algorithms.hpp"
#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"

namespace kumi {
namespace {

// Simulating costs about a microsecond per step; a decision may take a few candidates times
// this many steps (all ranks together) before the planner falls back to its rule of thumb,
// so that the first call of a size class never stalls for seconds on a large world.
constexpr std::uint64_t kMaxSimulatedSteps = 2'000'000;
// Recursive doubling's log2(n) rounds beat the ring's 2(n-1) hops below this (loopback TCP);
// only the rule of thumb uses it.
constexpr std::uint64_t kRuleSmallBytes = 64 * 1024;
// The smallest slice worth simulating: below it per-message costs dominate on every transport.
constexpr std::uint64_t kMinSliceBytes = 4096;
// A candidate replaces the best so far only when predicted this much faster: the model is not
// finer than that, and near-ties go to the candidate listed first (the ring, then recursive
// doubling: the simpler schedules). On one host, recursive doubling and Rabenseifner tie at 8 B
// in the model, and the second measured 1.7x slower (its idle ranks sleep and must be woken).
constexpr double kClearlyFaster = 0.97;

constexpr Collective kPlanned[] = {Collective::AllReduce, Collective::ReduceScatter, Collective::AllGather,
                                   Collective::Broadcast, Collective::Reduce,        Collective::Barrier,
                                   Collective::Send,      Collective::Recv,          Collective::AllToAll};

std::string algoNames(const std::vector<Algorithm>& v) {
  std::string s;
  for (Algorithm a : v) s += cat(s.empty() ? "" : ", ", algorithmName(a));
  return s;
}

}  // namespace

Planner::Planner(SimCluster cluster, AlgorithmFilter filter, std::uint64_t chunkBytes)
    : cluster_(std::move(cluster)), filter_(std::move(filter)), chunkBytes_(chunkBytes) {
  hosts_ = 0;
  for (int h : cluster_.hostOf) hosts_ = std::max(hosts_, h + 1);
  const bool even = evenHosts(cluster_.hostOf);
  for (Collective c : kPlanned) {
    std::vector<Algorithm> allowed, servable, notExcluded;
    for (Algorithm a : algorithmsFor(c)) {
      if (!canServe(c, a, even)) continue;
      servable.push_back(a);
      if (filter_.allows(c, a)) allowed.push_back(a);
      if (!filter_.excludes(c, a)) notExcluded.push_back(a);
    }
    auto& mine = candidates_[static_cast<std::size_t>(c)];
    if (!allowed.empty()) {
      mine = allowed;
      continue;
    }
    std::string why = even ? "" : " (hierarchical allgather needs every host to hold as many ranks as the others)";
    KUMI_REQUIRE_ARG(!notExcluded.empty(), "KUMI_ALGO='", filter_.spec(), "' leaves ", collectiveName(c),
                     " no algorithm that can serve this communicator", why, "; it could use: ", algoNames(servable));
    KUMI_WARN("KUMI_ALGO='", filter_.spec(), "' names no algorithm that can serve ", collectiveName(c),
              " on this communicator", why, "; the planner chooses among ", algoNames(notExcluded));
    mine = notExcluded;
  }
}

std::uint64_t Planner::slice(const Plan& p, Collective c, std::uint64_t count, std::size_t elemSize) const {
  std::uint64_t s = sliceElements(c, p.algo, count, elemSize, worldSize(), chunkBytes_);
  if (p.sliceShift > 0) s <<= 2 * p.sliceShift;
  if (p.sliceShift < 0) s >>= 2 * -p.sliceShift;
  return std::max<std::uint64_t>(s, 1);
}

std::optional<double> simulateCall(const SimCluster& cluster, Collective c, Algorithm a, std::uint64_t count,
                                   std::size_t elemSize, std::uint64_t slice, std::uint64_t maxSteps, int calls,
                                   int warmup) {
  const int n = static_cast<int>(cluster.hostOf.size());
  std::vector<PreparedSchedule> schedules;
  schedules.reserve(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) {
    ScheduleKey k{c, n, r, count, 0, false, false, slice};
    k.hostOf = &cluster.hostOf;
    schedules.emplace_back(buildSchedule(k, a));
    // Ranks' schedules are about equally long: rank 0's size tells the whole cost early.
    if (r == 0 && schedules[0].schedule.steps.size() * static_cast<std::uint64_t>(n) > maxSteps) return std::nullopt;
  }
  const SimResult res = simulate(schedules, cluster, elemSize, calls, warmup);
  if (!res.error.empty()) fail(kumiInternalError, "simulating ", algorithmName(a), " ", collectiveName(c), ": ", res.error);
  return res.seconds;
}

Planner Planner::repriced(SimCluster cluster) const {
  if (cluster.hostOf != cluster_.hostOf) fail(kumiInternalError, "repriced planner on another host map");
  Planner p = *this;
  p.cluster_ = std::move(cluster);
  p.cache_ = {};
  return p;
}

std::optional<double> Planner::predict(Collective c, Algorithm a, std::uint64_t count, std::size_t elemSize,
                                       int sliceShift) const {
  return simulateCall(cluster_, c, a, count, elemSize, slice({a, sliceShift, 0}, c, count, elemSize), kMaxSimulatedSteps);
}

const Plan& Planner::plan(Collective c, std::uint64_t count, std::size_t elemSize) {
  // On every call: an array lookup once the size class is known.
  const auto cls = static_cast<std::size_t>(std::bit_width(count * elemSize));
  auto& slot = cache_[static_cast<std::size_t>(c)][cls];
  if (!slot) slot = decide(c, count, elemSize);
  return *slot;
}

Plan Planner::decide(Collective c, std::uint64_t count, std::size_t elemSize) const {
  const auto& own = candidates(c);
  const std::uint64_t bytes = count * elemSize;
  if (own.size() == 1 && (c == Collective::Barrier || c == Collective::Send || c == Collective::Recv)) return {own.front(), 0, 0};
  if (worldSize() == 1 || count == 0) return {own.front(), 0, 0};
  std::optional<Plan> best;
  std::string report;
  for (Algorithm a : own) {
    std::vector<std::uint64_t> tried;  // slices (capped at the message) already simulated
    for (int shift : {0, -1, 1}) {
      if (shift != 0 && chunkBytes_ != 0) continue;  // KUMI_CHUNK_SIZE fixes the slice
      const std::uint64_t sl = std::min(slice({a, shift, 0}, c, count, elemSize), count);
      if (shift != 0 && (sl * elemSize < kMinSliceBytes || std::find(tried.begin(), tried.end(), sl) != tried.end()))
        continue;
      tried.push_back(sl);
      const auto t = predict(c, a, count, elemSize, shift);
      if (!t) {
        Plan rule = ruleOfThumb(c, bytes);
        KUMI_INFO("plan ", collectiveName(c), " ", formatBytes(bytes), " on ", worldSize(), " ranks: too large to simulate",
                  " at every call size; rule of thumb: ", algorithmName(rule.algo));
        return rule;
      }
      report += cat(report.empty() ? "" : ", ", algorithmName(a), shift < 0 ? "/4" : shift > 0 ? "x4" : "", " ",
                    static_cast<long long>(*t * 1e7) / 10.0, "us");
      if (!best || *t < kClearlyFaster * best->predicted) best = Plan{a, shift, *t};
    }
  }
  // Only a device cluster stages (its staging rate must be positive): say which planner spoke.
  KUMI_INFO("plan ", collectiveName(c), " ", formatBytes(bytes), cluster_.stagingGbps > 0 ? " of device buffers" : "",
            " on ", worldSize(), " ranks, ", hosts_, " host(s): ",
            report, " -> ", algorithmName(best->algo), best->sliceShift < 0 ? " (slice /4)" : best->sliceShift > 0 ? " (slice x4)" : "",
            ", predicted ", static_cast<long long>(best->predicted * 1e7) / 10.0, "us");
  return *best;
}

Plan Planner::ruleOfThumb(Collective c, std::uint64_t bytes) const {
  const auto& own = candidates(c);
  auto has = [&](Algorithm a) { return std::find(own.begin(), own.end(), a) != own.end(); };
  const bool nodeAware = hosts_ > 1 && hosts_ < worldSize();
  Algorithm preferred = own.front();
  if (c == Collective::AllReduce)
    preferred = bytes <= kRuleSmallBytes ? Algorithm::RecursiveDoubling : nodeAware ? Algorithm::Hierarchical : Algorithm::Ring;
  if (c == Collective::AllGather && nodeAware) preferred = Algorithm::Hierarchical;
  return {has(preferred) ? preferred : own.front(), 0, 0};
}

}  // namespace kumi
