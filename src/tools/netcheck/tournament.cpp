#include "tools/netcheck/tournament.hpp"

#include <algorithm>

namespace kumi::netcheck {

std::vector<std::vector<Pair>> roundRobinRounds(int nodes) {
  std::vector<std::vector<Pair>> rounds;
  if (nodes < 2) return rounds;
  // An odd count gets a phantom node; whoever meets it sits the round out.
  const int n = nodes + (nodes % 2);
  const int phantom = nodes % 2 ? n - 1 : -1;
  // Node n-1 stays put while the others rotate one place per round.
  for (int r = 0; r < n - 1; ++r) {
    std::vector<Pair> round;
    for (int i = 0; i < n / 2; ++i) {
      const int x = i == 0 ? n - 1 : (r + i) % (n - 1);
      const int y = (r + n - 1 - i) % (n - 1);
      if (x == phantom || y == phantom) continue;
      round.push_back({std::min(x, y), std::max(x, y)});
    }
    std::sort(round.begin(), round.end(), [](const Pair& p, const Pair& q) { return p.a < q.a; });
    rounds.push_back(std::move(round));
  }
  return rounds;
}

}  // namespace kumi::netcheck
