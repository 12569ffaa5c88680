// Algorithms are data: a schedule is the ordered list of steps one rank performs for one
// collective call, with the dependencies that let chunks pipeline. The same schedule is run by
// the executor over real transports, by the reference interpreter over plain memory (tests), and
// later by the simulator. Offsets and counts are in elements, so a schedule is independent of
// the buffers' addresses and reusable across calls.
#pragma once

#include <kumi/kumi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kumi {

// AllToAll comes last so that the others keep their numbers on the wire (call_stamp.cpp).
enum class Collective : std::uint8_t {
  AllReduce,
  ReduceScatter,
  AllGather,
  Broadcast,
  Reduce,
  Barrier,
  Send,
  Recv,
  AllToAll,
};
const char* collectiveName(Collective c);

// Which buffer a span refers to. Send and Recv are the user's; Scratch belongs to kumi and is
// bounded (a few pipeline slices), whatever the message size, except in the recursive-halving
// reduce-scatter, which keeps partial sums of up to half its input (two thirds when the world
// is not a power of two) there.
enum class Buf : std::uint8_t { Send, Recv, Scratch };

struct Span {
  Buf buf = Buf::Send;
  std::uint64_t offset = 0;  // elements
  std::uint64_t count = 0;   // elements
};

enum class StepKind : std::uint8_t {
  Send,        // send `src` to peer
  Recv,        // receive from peer into `dst`
  RecvReduce,  // receive from peer, then dst = src op received (a staging buffer holds it)
  Copy,        // dst = src
  Divide,      // dst /= world size (the end of kumiAvg)
};
const char* stepKindName(StepKind k);

struct Step {
  StepKind kind;
  int peer = -1;
  Span src;
  Span dst;
  std::uint32_t depBegin = 0;  // into Schedule::deps: steps that must complete first
  std::uint32_t depCount = 0;
};

struct Schedule {
  std::vector<Step> steps;
  std::vector<std::uint32_t> deps;
  std::uint64_t scratchCount = 0;  // elements of Scratch needed
  std::string algorithm;           // "ring", "chain", "dissemination", "direct", "pairwise", ...

  // Appends a step; returns its index.
  std::uint32_t add(const Step& s, std::initializer_list<std::uint32_t> after = {});
  std::uint32_t add(const Step& s, const std::vector<std::uint32_t>& after);
  // Peers this rank talks to (for connection set-up), sorted, unique.
  std::vector<int> peers() const;
  // Largest RecvReduce message in elements (sizes the staging buffers).
  std::uint64_t maxRecvReduceCount() const;
};

// Everything a schedule depends on besides the rank's buffers.
struct ScheduleKey {
  Collective coll;
  int worldSize;
  int rank;
  std::uint64_t count;       // allreduce/bcast/reduce: elements; reduce-scatter: per-rank
                             // output; all-gather: per-rank input; all-to-all: per-peer
                             // block; send/recv: elements
  int root;                  // broadcast/reduce root; send/recv peer
  bool inPlace;
  bool divide;               // kumiAvg: finish with a division
  std::uint64_t sliceCount;  // pipeline slice, elements
  // rank -> host index, for node-aware algorithms; owned by the communicator and fixed for its
  // life (compared by address, which is enough within one communicator's cache).
  const std::vector<int>* hostOf = nullptr;
  bool operator==(const ScheduleKey&) const = default;
};

}  // namespace kumi
