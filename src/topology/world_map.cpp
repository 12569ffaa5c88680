#include "topology/world_map.hpp"

#include <map>

#include "core/error.hpp"

namespace kumi {

WorldMap::WorldMap(const std::vector<RankPlace>& places) {
  std::map<std::string, int> index;
  for (const RankPlace& p : places) {
    auto [it, added] = index.emplace(p.hostId, static_cast<int>(hostRanks_.size()));
    if (added) {
      hostRanks_.emplace_back();
      hostnames_.push_back(p.hostname);
    }
    hostOf_.push_back(it->second);
    localRank_.push_back(static_cast<int>(hostRanks_[static_cast<std::size_t>(it->second)].size()));
    hostRanks_[static_cast<std::size_t>(it->second)].push_back(static_cast<int>(hostOf_.size()) - 1);
  }
}

std::vector<int> WorldMap::localPeers(int rank) const {
  std::vector<int> out;
  for (int r : ranksOn(hostOf(rank)))
    if (r != rank) out.push_back(r);
  return out;
}

std::string WorldMap::describe() const {
  std::string s = cat(hosts(), hosts() == 1 ? " host: " : " hosts: ");
  for (int h = 0; h < hosts(); ++h) {
    const auto& rs = ranksOn(h);
    // Ranks as ranges: "0-3,8".
    std::string list;
    for (std::size_t i = 0; i < rs.size();) {
      std::size_t j = i;
      while (j + 1 < rs.size() && rs[j + 1] == rs[j] + 1) ++j;
      list += cat(list.empty() ? "" : ",", rs[i], j > i ? cat("-", rs[j]) : std::string());
      i = j + 1;
    }
    s += cat(h ? ", " : "", hostname(h), " (rank", rs.size() > 1 ? "s " : " ", list, ")");
  }
  return s;
}

}  // namespace kumi
