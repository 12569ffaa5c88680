#include "collectives/planner.hpp"

#include <algorithm>

#include "collectives/algorithms.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi {
namespace {

struct Named {
  const char* name;
  Algorithm algo;
};
constexpr Named kAlgorithmNames[] = {{"ring", Algorithm::Ring},
                                     {"recursive_doubling", Algorithm::RecursiveDoubling},
                                     {"rd", Algorithm::RecursiveDoubling},
                                     {"chain", Algorithm::Chain},
                                     {"dissemination", Algorithm::Dissemination},
                                     {"direct", Algorithm::Direct},
                                     {"hierarchical", Algorithm::Hierarchical},
                                     {"tree", Algorithm::Tree},
                                     {"rabenseifner", Algorithm::Rabenseifner},
                                     {"rhd", Algorithm::Rabenseifner},
                                     {"binomial", Algorithm::Binomial},
                                     {"pairwise", Algorithm::Pairwise}};

}  // namespace

const char* algorithmName(Algorithm a) {
  for (const auto& n : kAlgorithmNames)
    if (n.algo == a) return n.name;
  return "unknown";
}

std::span<const Algorithm> algorithmsFor(Collective c) {
  static constexpr Algorithm kAllReduce[] = {Algorithm::Ring, Algorithm::RecursiveDoubling, Algorithm::Hierarchical,
                                             Algorithm::Tree, Algorithm::Rabenseifner};
  static constexpr Algorithm kReduceScatter[] = {Algorithm::Ring, Algorithm::Rabenseifner};
  static constexpr Algorithm kAllGather[] = {Algorithm::Ring, Algorithm::Hierarchical, Algorithm::RecursiveDoubling};
  static constexpr Algorithm kChain[] = {Algorithm::Chain, Algorithm::Binomial};
  static constexpr Algorithm kDissemination[] = {Algorithm::Dissemination};
  static constexpr Algorithm kDirect[] = {Algorithm::Direct};
  static constexpr Algorithm kAllToAll[] = {Algorithm::Pairwise};
  switch (c) {
    case Collective::AllReduce: return kAllReduce;
    case Collective::ReduceScatter: return kReduceScatter;
    case Collective::AllGather: return kAllGather;
    case Collective::Broadcast:
    case Collective::Reduce: return kChain;
    case Collective::Barrier: return kDissemination;
    case Collective::Send:
    case Collective::Recv: return kDirect;
    case Collective::AllToAll: return kAllToAll;
  }
  return {};
}

AlgorithmFilter::AlgorithmFilter(const std::string& spec) : spec_(spec) {
  for (const std::string& part : splitList(spec, ';')) {
    if (part.empty()) continue;
    Rule rule{true, Collective::AllReduce, false, {}};
    std::string list = part;
    auto colon = part.find(':');
    if (colon != std::string::npos) {
      std::string coll = trim(part.substr(0, colon));
      list = trim(part.substr(colon + 1));
      bool found = false;
      for (Collective c : {Collective::AllReduce, Collective::ReduceScatter, Collective::AllGather, Collective::Broadcast,
                           Collective::Reduce, Collective::Barrier, Collective::AllToAll})
        if (coll == collectiveName(c)) {
          rule.anyCollective = false;
          rule.coll = c;
          found = true;
        }
      KUMI_REQUIRE_ARG(found, "KUMI_ALGO='", spec, "': unknown collective '", coll,
                       "' (allreduce, reduce_scatter, allgather, broadcast, reduce, barrier, alltoall)");
    }
    if (!list.empty() && list[0] == '^') {
      rule.exclude = true;
      list = list.substr(1);
    }
    for (const std::string& name : splitList(list, ',')) {
      bool found = false;
      for (const auto& n : kAlgorithmNames)
        if (name == n.name) {
          rule.algos.push_back(n.algo);
          found = true;
        }
      KUMI_REQUIRE_ARG(found, "KUMI_ALGO='", spec, "': unknown algorithm '", name,
                       "' (ring, recursive_doubling, rd, hierarchical, tree, rabenseifner, rhd, binomial, chain, dissemination, "
                       "direct, pairwise)");
    }
    rules_.push_back(rule);
    // A rule for one collective must leave it at least one algorithm.
    if (!rule.anyCollective) {
      std::string own;
      bool any = false;
      for (Algorithm a : algorithmsFor(rule.coll)) {
        any = any || allows(rule.coll, a);
        own += cat(own.empty() ? "" : ", ", algorithmName(a));
      }
      KUMI_REQUIRE_ARG(any, "KUMI_ALGO='", spec, "' leaves ", collectiveName(rule.coll), " no algorithm (it has: ", own, ")");
    }
  }
}

bool AlgorithmFilter::allows(Collective c, Algorithm a) const {
  const auto own = algorithmsFor(c);
  auto names = [](const Rule& r, Algorithm x) { return std::find(r.algos.begin(), r.algos.end(), x) != r.algos.end(); };
  for (const Rule& r : rules_) {
    if (!r.anyCollective && r.coll != c) continue;
    if (r.exclude) {
      if (names(r, a)) return false;
      continue;
    }
    // "ring" alone restricts the collectives that have a ring, not those that have none.
    bool namesOwn = std::any_of(own.begin(), own.end(), [&](Algorithm x) { return names(r, x); });
    if ((namesOwn || !r.anyCollective) && !names(r, a)) return false;
  }
  return true;
}

bool AlgorithmFilter::excludes(Collective c, Algorithm a) const {
  for (const Rule& r : rules_)
    if ((r.anyCollective || r.coll == c) && r.exclude && std::find(r.algos.begin(), r.algos.end(), a) != r.algos.end())
      return true;
  return false;
}

Schedule buildSchedule(const ScheduleKey& key, Algorithm a) {
  switch (a) {
    case Algorithm::RecursiveDoubling:
      if (key.coll == Collective::AllReduce) return recursiveDoublingAllReduce(key);
      if (key.coll == Collective::AllGather) return recursiveDoublingAllGather(key);
      break;
    case Algorithm::Tree:
      if (key.coll == Collective::AllReduce) return doubleBinaryTreeAllReduce(key);
      break;
    case Algorithm::Rabenseifner:
      if (key.coll == Collective::AllReduce) return rabenseifnerAllReduce(key);
      if (key.coll == Collective::ReduceScatter) return rabenseifnerReduceScatter(key);
      break;
    case Algorithm::Binomial:
      if (key.coll == Collective::Broadcast) return binomialBroadcast(key);
      if (key.coll == Collective::Reduce) return binomialReduce(key);
      break;
    case Algorithm::Hierarchical:
      if (key.coll == Collective::AllReduce) return hierarchicalAllReduce(key);
      if (key.coll == Collective::AllGather) return hierarchicalAllGather(key);
      break;
    case Algorithm::Ring:
      if (key.coll == Collective::AllReduce) return ringAllReduce(key);
      if (key.coll == Collective::ReduceScatter) return ringReduceScatter(key);
      if (key.coll == Collective::AllGather) return ringAllGather(key);
      break;
    case Algorithm::Chain:
      if (key.coll == Collective::Broadcast) return chainBroadcast(key);
      if (key.coll == Collective::Reduce) return chainReduce(key);
      break;
    case Algorithm::Dissemination:
      if (key.coll == Collective::Barrier) return disseminationBarrier(key);
      break;
    case Algorithm::Direct:
      if (key.coll == Collective::Send || key.coll == Collective::Recv) return directSendRecv(key);
      break;
    case Algorithm::Pairwise:
      if (key.coll == Collective::AllToAll) return pairwiseAllToAll(key);
      break;
  }
  fail(kumiInvalidArgument, "algorithm ", algorithmName(a), " does not implement ", collectiveName(key.coll));
}

std::uint64_t sliceElements(Collective c, Algorithm a, std::uint64_t count, std::size_t elemSize, int worldSize,
                            std::uint64_t chunkBytes) {
  const std::uint64_t es = elemSize;
  if (chunkBytes) return std::max<std::uint64_t>(1, chunkBytes / es);
  // Bytes of one pipeline unit before slicing: a ring chunk, or the whole message for chains.
  std::uint64_t unit = count * es;
  if (c == Collective::AllReduce) unit /= static_cast<std::uint64_t>(worldSize);
  // Hierarchical: a shard per local rank, cut again across the hosts' ring. Trees: half the
  // message per tree.
  if (a == Algorithm::Hierarchical) unit = count * es / static_cast<std::uint64_t>(worldSize) / 2;
  if (a == Algorithm::Tree) unit = count * es / 2;
  // Rings pipeline across chunks already, and per-message costs dominate below a megabyte on
  // TCP: whole chunks up to 1 MiB measured best (docs/PERFORMANCE.md). Chains and trees need
  // several slices in flight along their depth to overlap their hops.
  const bool deep = c == Collective::Broadcast || c == Collective::Reduce || a == Algorithm::Tree;
  std::uint64_t slice = std::clamp<std::uint64_t>(deep ? unit / 8 : unit, 32 << 10, 1 << 20);
  return std::max<std::uint64_t>(1, slice / es);
}

}  // namespace kumi
