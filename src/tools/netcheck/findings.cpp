#include "tools/netcheck/findings.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "core/strings.hpp"
#include "tools/netcheck/robust_stats.hpp"

namespace kumi::netcheck {
namespace {

struct PeerStats {
  double bandwidth = 0, bandwidthMad = 0, latency = 0, latencyMad = 0;
};

// Faults only make links slower, and one bad node owns 2/N of the directed links (half of them
// at four nodes), so the middle of the distribution is no reference: what healthy links do is
// read off its good end (the 90th percentile of bandwidth, the 10th of latency), and their
// spread from the best quarter of the links.
std::vector<double> bestQuarter(std::vector<double> v, bool highIsGood) {
  std::sort(v.begin(), v.end());
  if (highIsGood) std::reverse(v.begin(), v.end());
  v.resize(std::min(v.size(), std::max<std::size_t>(2, (v.size() + 3) / 4)));
  return v;
}

std::map<std::string, PeerStats> peerStatsByTransport(const std::vector<LinkResult>& links) {
  std::map<std::string, std::vector<double>> bw, lat;
  for (const auto& l : links) {
    if (!l.error.empty()) continue;
    bw[l.key.transport].push_back(l.bandwidth);
    if (l.latency > 0) lat[l.key.transport].push_back(l.latency);
  }
  std::map<std::string, PeerStats> out;
  for (auto& [t, v] : bw) {
    const auto& l = lat[t];
    out[t] = {quantile(v, 0.9), scaledMad(bestQuarter(v, true)), quantile(l, 0.1), scaledMad(bestQuarter(l, false))};
  }
  return out;
}

std::string describe(const LinkVerdict& v, const std::vector<std::string>& names) {
  const LinkKey& k = v.link.key;
  std::string s = names[static_cast<std::size_t>(k.src)] + " -> " + names[static_cast<std::size_t>(k.dst)] + " rail " +
                  std::to_string(k.rail) + " " + k.transport + ": ";
  if (!v.link.error.empty()) return s + "failed: " + v.link.error;
  s += formatted("%.3f GB/s", v.link.bandwidth / 1e9);
  if (v.expected.bandwidth > 0) s += formatted(" (expected %.3f, %+.0f%%)", v.expected.bandwidth / 1e9, -100 * v.drop);
  s += formatted(", latency %.1f us", v.link.latency * 1e6);
  if (v.expected.latency > 0) s += formatted(" (expected %.1f)", v.expected.latency * 1e6);
  return s + " [" + v.expectedFrom + "]";
}

// The links a node (or one of its NICs) takes part in, among those still unexplained.
struct Share {
  int bad = 0, total = 0;
  std::set<int> peers;
  double value() const { return total ? static_cast<double>(bad) / total : 0; }
};

}  // namespace

const char* severityName(Severity s) { return s == Severity::Critical ? "critical" : "warning"; }
const char* scopeName(Scope s) {
  switch (s) {
    case Scope::Node: return "node";
    case Scope::Nic: return "nic";
    case Scope::Rail: return "rail";
    case Scope::Pair: return "pair";
  }
  return "?";
}

std::vector<bool> Analysis::nodesInFindings(int nodes) const {
  std::vector<bool> in(static_cast<std::size_t>(std::max(nodes, 0)), false);
  auto mark = [&](int n) {
    if (n >= 0 && n < nodes) in[static_cast<std::size_t>(n)] = true;
  };
  for (const auto& f : findings) {
    if (f.scope == Scope::Rail) {
      std::fill(in.begin(), in.end(), true);
      continue;
    }
    mark(f.node);
    mark(f.peer);
  }
  return in;
}

Analysis analyse(const std::vector<LinkResult>& links, const std::vector<std::string>& names,
                 const Baseline& baseline, const AnalysisOptions& o) {
  Analysis a;
  const auto peers = peerStatsByTransport(links);
  for (const auto& l : links) {
    LinkVerdict v;
    v.link = l;
    const auto& ps = peers.count(l.key.transport) ? peers.at(l.key.transport) : PeerStats{};
    const auto b = baseline.find({names[static_cast<std::size_t>(l.key.src)], names[static_cast<std::size_t>(l.key.dst)],
                                  l.key.rail, l.key.transport});
    const auto t = o.thresholds.find(l.key.transport);
    bool fromPeers = false;
    if (b != baseline.end()) {
      v.expected = b->second;
      v.expectedFrom = "baseline";
    } else if (t != o.thresholds.end()) {
      v.expected = t->second;
      v.expectedFrom = "threshold";
    } else {
      v.expected = {ps.bandwidth, ps.latency};
      v.expectedFrom = "peers";
      fromPeers = true;
    }
    if (!l.error.empty()) {
      v.slow = true;
      v.drop = 1;
    } else if (v.expected.bandwidth > 0) {
      v.drop = 1 - l.bandwidth / v.expected.bandwidth;
      // Against the peers' median, a drop must also stand out of their spread: on a quiet
      // fabric 20% is news, on a noisy one it is Tuesday.
      v.slow = v.drop >= o.minDrop && (!fromPeers || l.bandwidth < ps.bandwidth - o.madFactor * ps.bandwidthMad);
    }
    if (l.error.empty() && v.expected.latency > 0 && l.latency > 0)
      v.laggy = l.latency > v.expected.latency * (1 + o.latencyRise) && l.latency > v.expected.latency + o.latencyFloor &&
                (!fromPeers || l.latency > ps.latency + o.madFactor * ps.latencyMad);
    a.links.push_back(std::move(v));
  }

  const int nodes = static_cast<int>(names.size());
  int rails = 0;
  for (const auto& l : links) rails = std::max(rails, l.key.rail + 1);
  std::vector<bool> explained(a.links.size(), false);
  auto bad = [&](std::size_t i) { return !explained[i] && (a.links[i].slow || a.links[i].laggy); };
  auto finish = [&](Finding f, const std::vector<std::size_t>& idx) {
    bool critical = false;
    for (std::size_t i : idx) {
      f.evidence.push_back(describe(a.links[i], names));
      critical = critical || a.links[i].drop >= o.criticalDrop;
      explained[i] = true;
    }
    f.severity = critical ? Severity::Critical : Severity::Warning;
    a.findings.push_back(std::move(f));
  };
  // Shares per node (rail -1) or per node and rail, over links not yet explained.
  auto shares = [&](int rail) {
    std::vector<Share> s(static_cast<std::size_t>(nodes));
    for (std::size_t i = 0; i < a.links.size(); ++i) {
      if (explained[i]) continue;
      const LinkKey& k = a.links[i].link.key;
      if (rail >= 0 && k.rail != rail) continue;
      for (auto [me, other] : {std::pair{k.src, k.dst}, std::pair{k.dst, k.src}}) {
        Share& sh = s[static_cast<std::size_t>(me)];
        ++sh.total;
        sh.bad += bad(i) ? 1 : 0;
        sh.peers.insert(other);
      }
    }
    return s;
  };
  auto badLinksOf = [&](int node, int rail) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < a.links.size(); ++i) {
      const LinkKey& k = a.links[i].link.key;
      if (bad(i) && (k.src == node || k.dst == node) && (rail < 0 || k.rail == rail)) idx.push_back(i);
    }
    return idx;
  };

  // A whole rail: its links slow at every node (a switch plane, not a NIC). Needs three nodes,
  // or one slow pair would look like a slow rail.
  for (int r = 0; r < rails && rails > 1 && nodes >= 3; ++r) {
    const auto s = shares(r);
    const bool all = std::all_of(s.begin(), s.end(), [&](const Share& x) { return x.total > 0 && x.value() >= o.nodeShare; });
    if (!all) continue;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < a.links.size(); ++i)
      if (bad(i) && a.links[i].link.key.rail == r) idx.push_back(i);
    Finding f;
    f.scope = Scope::Rail;
    f.rail = r;
    f.summary = "rail " + std::to_string(r) + ": links slow at every node (" + std::to_string(idx.size()) +
                " links): the network plane of this rail, not one node";
    finish(std::move(f), idx);
  }
  // Nodes, then single NICs: greedily the one with the largest share of bad links, when it is
  // above the bar, measured against at least two peers, and ahead of every other node (with two
  // nodes, or two equally bad ones, the link between them is the only thing known to be bad).
  for (int pass = 0; pass < 2; ++pass) {
    const bool perRail = pass == 1;
    for (int r = perRail ? 0 : -1; r < (perRail ? rails : 0); ++r) {
      for (;;) {
        const auto s = shares(r);
        int best = -1;
        bool tie = false;
        for (int n = 0; n < nodes; ++n) {
          const Share& x = s[static_cast<std::size_t>(n)];
          if (x.total == 0 || x.peers.size() < 2 || x.value() < o.nodeShare) continue;
          if (best < 0 || x.value() > s[static_cast<std::size_t>(best)].value()) {
            best = n;
            tie = false;
          } else if (x.value() == s[static_cast<std::size_t>(best)].value()) {
            tie = true;
          }
        }
        if (best < 0 || tie) break;
        const Share& x = s[static_cast<std::size_t>(best)];
        Finding f;
        f.scope = perRail ? Scope::Nic : Scope::Node;
        f.node = best;
        f.rail = r;
        const std::string name = names[static_cast<std::size_t>(best)];
        f.summary = perRail ? "node " + name + " rail " + std::to_string(r) + ": " + std::to_string(x.bad) + " of " +
                                  std::to_string(x.total) + " links through this NIC slow, its other rails fine"
                            : "node " + name + ": " + std::to_string(x.bad) + " of " + std::to_string(x.total) +
                                  " of its links slow, to " + std::to_string(x.peers.size()) + " peers";
        finish(std::move(f), badLinksOf(best, r));
      }
    }
  }
  // What is left: single pairs (both directions of a pair and rail together).
  std::map<std::tuple<int, int, int>, std::vector<std::size_t>> pairs;
  for (std::size_t i = 0; i < a.links.size(); ++i) {
    if (!bad(i)) continue;
    const LinkKey& k = a.links[i].link.key;
    pairs[{std::min(k.src, k.dst), std::max(k.src, k.dst), k.rail}].push_back(i);
  }
  for (const auto& [key, idx] : pairs) {
    const auto [x, y, r] = key;
    Finding f;
    f.scope = Scope::Pair;
    f.node = x;
    f.peer = y;
    f.rail = r;
    f.transport = a.links[idx.front()].link.key.transport;
    if (x == y) {  // the intra-node measurement: local ranks 0 and 1 of one node
      f.summary = "node " + names[static_cast<std::size_t>(x)] + ": intra-node link (" + f.transport + ") slow";
      finish(std::move(f), idx);
      continue;
    }
    f.summary = "link " + names[static_cast<std::size_t>(x)] + " <-> " + names[static_cast<std::size_t>(y)] + " rail " +
                std::to_string(r) + (nodes > 2 ? ": slow while both nodes' other links are fine"
                                                : ": slow (with two nodes, which end is at fault cannot be told)");
    finish(std::move(f), idx);
  }
  return a;
}

}  // namespace kumi::netcheck
