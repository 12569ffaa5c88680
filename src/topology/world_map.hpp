// Where every rank of a communicator lives: hosts (by host id), each rank's index on its host,
// node leaders and rails. Built from every rank's own view (its host id and hostname), gathered
// through the store; every rank computes the same map, so schedules built from it agree.
#pragma once

#include <string>
#include <vector>

namespace kumi {

struct RankPlace {
  std::string hostId;
  std::string hostname;
  std::string rdma;  // the link layer of the rank's RDMA port ("roce", "ib"), "" without one
};

class WorldMap {
 public:
  WorldMap() = default;
  // Hosts are numbered in order of their lowest rank; ranks on a host in rank order.
  explicit WorldMap(const std::vector<RankPlace>& places);

  int worldSize() const { return static_cast<int>(hostOf_.size()); }
  int hosts() const { return static_cast<int>(hostRanks_.size()); }
  int hostOf(int rank) const { return hostOf_[static_cast<std::size_t>(rank)]; }
  // Index of rank among the ranks of its host; ranks with the same index form a rail.
  int localRank(int rank) const { return localRank_[static_cast<std::size_t>(rank)]; }
  int localSize(int rank) const { return static_cast<int>(ranksOn(hostOf(rank)).size()); }
  const std::vector<int>& ranksOn(int host) const { return hostRanks_[static_cast<std::size_t>(host)]; }
  int leader(int host) const { return ranksOn(host).front(); }
  const std::string& hostname(int host) const { return hostnames_[static_cast<std::size_t>(host)]; }
  // rank -> host index, the form schedules take.
  const std::vector<int>& hostIndex() const { return hostOf_; }
  // Other ranks on rank's host.
  std::vector<int> localPeers(int rank) const;
  // "2 hosts: node0 (ranks 0-1), node1 (ranks 2-3)".
  std::string describe() const;

 private:
  std::vector<int> hostOf_, localRank_;
  std::vector<std::vector<int>> hostRanks_;
  std::vector<std::string> hostnames_;
};

}  // namespace kumi
