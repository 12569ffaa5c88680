// Which nodes measure each other when: a round-robin tournament, so that every pair of nodes is
// measured and no node (no NIC) carries more than one measured flow per direction at a time. A
// NIC shared by two flows would report half its speed and blame a healthy link.
#pragma once

#include <vector>

namespace kumi::netcheck {

struct Pair {
  int a = 0, b = 0;  // a < b; both directions are measured, a -> b first
  bool operator==(const Pair&) const = default;
};

// The rounds for `nodes` nodes (circle method): nodes - 1 rounds when even, nodes when odd (each
// node then sits out one round). Every unordered pair appears in exactly one round, and the pairs
// of a round are disjoint. Fewer than two nodes: no rounds.
std::vector<std::vector<Pair>> roundRobinRounds(int nodes);

}  // namespace kumi::netcheck
