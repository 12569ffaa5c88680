// Hierarchical allreduce: the network is crossed once per host, not once per rank.
//  1. Inside each host, a direct reduce-scatter: the data is cut into S shards (S = the most
//     ranks any host has); local rank i of a host with L ranks owns shards i, i+L, ...; every
//     rank sends each shard to its owner, which reduces them.
//  2. Across hosts, the owners of a shard (one per host, the same local index when hosts are
//     even: a "rail") run a ring allreduce of it; all shards' rings run in parallel.
//  3. Inside each host, owners send the finished shards to the other local ranks.
// Uneven hosts work: on a host with fewer ranks some own several shards. Every span is one of
// the shard's pipeline slices, so phases pipeline slice by slice.
#include <algorithm>

#include "collectives/algorithms.hpp"
#include "collectives/builder.hpp"
#include "core/error.hpp"

namespace kumi {
namespace {

struct Layout {
  std::vector<std::vector<int>> hosts;  // ranks of each host, in rank order
  int shards = 1;
  int owner(int host, int shard) const {
    const auto& rs = hosts[static_cast<std::size_t>(host)];
    return rs[static_cast<std::size_t>(shard) % rs.size()];
  }
};

Layout layoutOf(const ScheduleKey& k) {
  if (!k.hostOf || static_cast<int>(k.hostOf->size()) != k.worldSize)
    fail(kumiInternalError, "hierarchical schedule without a host map");
  Layout l;
  for (int r = 0; r < k.worldSize; ++r) {
    const auto h = static_cast<std::size_t>((*k.hostOf)[static_cast<std::size_t>(r)]);
    if (l.hosts.size() <= h) l.hosts.resize(h + 1);
    l.hosts[h].push_back(r);
  }
  for (const auto& rs : l.hosts) {
    if (rs.empty()) fail(kumiInternalError, "host map with an empty host");
    l.shards = std::max(l.shards, static_cast<int>(rs.size()));
  }
  return l;
}

// Run c (taken mod n) of n nearly equal runs of consecutive slices: a ring chunk.
std::vector<Block> runOf(const std::vector<Block>& slices, int n, int c) {
  const Block run = blockOf(slices.size(), n, ((c % n) + n) % n);
  return {slices.begin() + static_cast<long>(run.offset), slices.begin() + static_cast<long>(run.offset + run.count)};
}

// Ring allreduce, in place in Recv, among `ring` (this rank at `pos`) over the given slices: the
// slices are split into ring.size() runs ("chunks"); reduce-scatter, then allgather.
void ringOverSlices(ScheduleBuilder& b, const std::vector<int>& ring, int pos, const std::vector<Block>& slices,
                    bool divide) {
  const int n = static_cast<int>(ring.size());
  const int next = ring[static_cast<std::size_t>((pos + 1) % n)], prev = ring[static_cast<std::size_t>((pos + n - 1) % n)];
  for (int step = 0; step < n - 1; ++step) {
    for (Block sl : runOf(slices, n, pos - step)) b.send(next, at(Buf::Recv, sl));
    for (Block sl : runOf(slices, n, pos - step - 1)) b.recvReduce(prev, at(Buf::Recv, sl), at(Buf::Recv, sl));
  }
  if (divide)
    for (Block sl : runOf(slices, n, pos + 1)) b.divide(at(Buf::Recv, sl));
  for (int step = 0; step < n - 1; ++step) {
    for (Block sl : runOf(slices, n, pos + 1 - step)) b.send(next, at(Buf::Recv, sl));
    for (Block sl : runOf(slices, n, pos - step)) b.recv(prev, at(Buf::Recv, sl));
  }
}

}  // namespace

Schedule hierarchicalAllReduce(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "hierarchical";
  ScheduleBuilder b(s, k.inPlace);
  if (k.count == 0) return s;
  const Layout l = layoutOf(k);
  const int me = k.rank;
  const int host = (*k.hostOf)[static_cast<std::size_t>(me)];
  const auto& local = l.hosts[static_cast<std::size_t>(host)];
  const int hosts = static_cast<int>(l.hosts.size());
  std::vector<std::vector<Block>> slices(static_cast<std::size_t>(l.shards));
  for (int j = 0; j < l.shards; ++j) slices[static_cast<std::size_t>(j)] = slicesOf(blockOf(k.count, l.shards, j), k.sliceCount);
  const bool divideAfterLocal = k.divide && hosts == 1;

  // The hosts' rings start their reduce-scatter with chunk `host` and go down from there, and
  // finish chunk host + 1 first, then host, host - 1, ...: the local phases move the chunks in
  // those orders, every shard's chunk together, so that each ring starts as soon as its first
  // chunk is reduced inside the host and each finished chunk is handed on at once. (In shard
  // and slice order, most rings waited for the whole local reduce-scatter, and the allgather
  // for the whole ring: 1.4x the NIC-bound time at 1024 ranks in kumi-sim.) Every rank of a host
  // has the same `host`, so both ends of each local connection see the same order.
  auto inRingOrder = [&](int firstChunk, auto&& fn) {
    for (int t = 0; t < hosts; ++t)
      for (int j = 0; j < l.shards; ++j)
        for (Block sl : runOf(slices[static_cast<std::size_t>(j)], hosts, firstChunk - t)) fn(j, sl);
  };
  // 1. Local reduce-scatter to each shard's owner.
  inRingOrder(host, [&](int j, Block sl) {
    const int owner = l.owner(host, j);
    if (owner != me) {
      b.send(owner, at(Buf::Send, sl));
      return;
    }
    bool first = true;
    for (int q : local) {
      if (q == me) continue;
      b.recvReduce(q, at(first ? Buf::Send : Buf::Recv, sl), at(Buf::Recv, sl));
      first = false;
    }
    if (first && !k.inPlace) b.copy(at(Buf::Send, sl), at(Buf::Recv, sl));
    if (divideAfterLocal) b.divide(at(Buf::Recv, sl));
  });
  // 2. Across hosts: one ring per shard among its owners, for the shards this rank owns.
  if (hosts > 1) {
    for (int j = 0; j < l.shards; ++j) {
      if (l.owner(host, j) != me) continue;
      std::vector<int> ring;
      for (int h = 0; h < hosts; ++h) ring.push_back(l.owner(h, j));
      ringOverSlices(b, ring, host, slices[static_cast<std::size_t>(j)], k.divide);
    }
  }
  // 3. Local allgather from the owners.
  inRingOrder(host + 1, [&](int j, Block sl) {
    const int owner = l.owner(host, j);
    if (owner == me) {
      for (int q : local)
        if (q != me) b.send(q, at(Buf::Recv, sl));
    } else {
      b.recv(owner, at(Buf::Recv, sl));
    }
  });
  return s;
}

// Hierarchical allgather, for hosts with equal rank counts: first the ranks of each rail (the
// same local index on every host) ring-allgather their blocks across hosts, then every rank
// hands its rail's blocks to the other ranks of its host. Each host's link carries each block
// from elsewhere once, instead of (n-1)/n of everything for the flat ring.
Schedule hierarchicalAllGather(const ScheduleKey& k) {
  Schedule s;
  s.algorithm = "hierarchical";
  const Layout l = layoutOf(k);
  const int me = k.rank;
  const int hosts = static_cast<int>(l.hosts.size());
  for (const auto& rs : l.hosts)
    if (static_cast<int>(rs.size()) != l.shards) fail(kumiInternalError, "hierarchical allgather needs even hosts");
  const std::uint64_t sc = k.count;
  ScheduleBuilder b(s, k.inPlace, static_cast<std::uint64_t>(me) * sc, 0);
  const auto slices = slicesOf({0, sc}, k.sliceCount);
  auto block = [&](int rank, Block sl) { return Span{Buf::Recv, static_cast<std::uint64_t>(rank) * sc + sl.offset, sl.count}; };
  if (!k.inPlace && sc > 0)
    for (Block sl : slices) b.copy({Buf::Send, sl.offset, sl.count}, block(me, sl));
  if (sc == 0) return s;
  const int host = (*k.hostOf)[static_cast<std::size_t>(me)];
  const auto& local = l.hosts[static_cast<std::size_t>(host)];
  const int index = static_cast<int>(std::find(local.begin(), local.end(), me) - local.begin());
  auto railRank = [&](int h, int i) { return l.hosts[static_cast<std::size_t>(((h % hosts) + hosts) % hosts)][static_cast<std::size_t>(i)]; };
  // 1. Across hosts, along the rail: after step t this rank holds the block of host (host - t - 1).
  const int next = railRank(host + 1, index), prev = railRank(host - 1, index);
  for (int step = 0; step < hosts - 1; ++step) {
    for (Block sl : slices)
      b.send(next, step == 0 ? Span{Buf::Send, sl.offset, sl.count} : block(railRank(host - step, index), sl));
    for (Block sl : slices) b.recv(prev, block(railRank(host - step - 1, index), sl));
  }
  // 2. Inside the host: each rank passes its rail's blocks on, in the order they arrived.
  for (int t = 0; t < hosts; ++t) {
    for (int q : local) {
      if (q == me) continue;
      for (Block sl : slices) b.send(q, t == 0 ? Span{Buf::Send, sl.offset, sl.count} : block(railRank(host - t, index), sl));
    }
    for (int qi = 0; qi < static_cast<int>(local.size()); ++qi) {
      if (qi == index) continue;
      for (Block sl : slices) b.recv(local[static_cast<std::size_t>(qi)], block(railRank(host - t, qi), sl));
    }
  }
  return s;
}

bool evenHosts(const std::vector<int>& hostOf) {
  std::vector<int> perHost;
  for (int h : hostOf) {
    if (static_cast<std::size_t>(h) >= perHost.size()) perHost.resize(static_cast<std::size_t>(h) + 1);
    ++perHost[static_cast<std::size_t>(h)];
  }
  return std::all_of(perHost.begin(), perHost.end(), [&](int c) { return c == perHost.front(); });
}

}  // namespace kumi
