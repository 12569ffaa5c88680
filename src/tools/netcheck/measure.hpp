// The measurements of kumi-netcheck over a kumi communicator: point-to-point bandwidth and
// latency of node pairs round by round (every rail at once), the intra-node link, and allreduce
// sweeps per algorithm. Every rank calls the same functions in the same order; results come back
// on every rank, so that rank 0 keeps whatever was measured before a later failure.
#pragma once

#include <kumi/kumi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/deadline.hpp"
#include "tools/netcheck/findings.hpp"
#include "tools/netcheck/report.hpp"
#include "tools/netcheck/tournament.hpp"

namespace kumi::netcheck {

struct World {
  kumiComm_t comm = nullptr;
  int rank = 0, size = 0;
  std::vector<int> nodeOf;              // rank -> node (numbered by first rank)
  std::vector<int> localIndex;          // rank -> its index on its node: the rail it measures
  std::vector<std::vector<int>> ranksOf;  // node -> ranks
  std::vector<std::string> nodeNames;   // node -> KUMI_NODE_NAME, KUMI_HOSTID or host name of its first rank
  int nodes() const { return static_cast<int>(ranksOf.size()); }
};

// A communicator destroyed with its owner.
using CommHandle = std::unique_ptr<kumiComm, decltype(&kumiCommDestroy)>;

// Seconds since t0 on the steady clock.
double secondsSince(std::chrono::steady_clock::time_point t0);

// Who is where, from kumi's host ids and every rank's host name (one allgather).
World discoverWorld(kumiComm_t comm);

// Every sample travels to rank 0 in a fixed-size record: this many at most.
constexpr int kMaxRepeats = 64;

struct P2POptions {
  std::uint64_t bytes = 4 << 20;  // per message
  int messages = 4;               // per bandwidth sample
  int repeats = 5;                // bandwidth samples per direction (at most kMaxRepeats)
  int latencyIters = 20;          // 8-byte round trips per direction
};

// Rank 0's yes or no, for everyone: ranks' clocks differ, and all must take the same branch
// (another round, another rail, another sweep step). Throws when the broadcast fails.
bool agreeWithRank0(const World& w, bool yes);

// One round of the tournament: each pair of nodes, on every rail both have, measures a -> b then
// b -> a. Returns every link measured in the round (on every rank).
std::vector<LinkResult> measureRound(const World& w, const std::vector<Pair>& round, const P2POptions& o);
// Local ranks 0 and 1 of every node with two ranks or more, both directions, all nodes at once.
std::vector<LinkResult> measureIntraNode(const World& w, const P2POptions& o);

struct SweepOptions {
  std::vector<std::string> algorithms;  // forced in turn besides "auto"; empty: auto only
  std::vector<std::uint64_t> sizes;     // bytes
  int iters = 3, repeats = 3;
};
// Allreduce busbw per algorithm and size, stopping (with a note) when the deadline passes.
std::vector<AllreduceRow> allreduceSweep(const World& w, const SweepOptions& o, const Deadline& deadline,
                                         std::vector<std::string>* notes);

}  // namespace kumi::netcheck
