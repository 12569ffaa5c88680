#include "tools/netcheck/measure.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>

#include "core/scoped_env.hpp"
#include "tools/netcheck/robust_stats.hpp"

namespace kumi::netcheck {
namespace {

using Clock = std::chrono::steady_clock;

void check(kumiResult_t r, const char* what) {
  if (r != kumiSuccess) throw std::runtime_error(std::string(what) + ": " + kumiGetLastError());
}

// What one rank measured as the sender of a link in one round: every rank contributes one
// (valid = 0 when it sent nothing), and one allgather brings all of them to everyone.
struct Record {
  std::int32_t valid = 0, src = 0, dst = 0, rail = 0, repeats = 0, sameNode = 0;
  double bandwidth = 0, latency = 0, spread = 0;
  double samples[kMaxRepeats] = {};
  char error[96] = {};
};

std::string transportBetween(bool sameNode) {
  // The library's own choice: shared memory inside a host unless forced onto TCP.
  const char* forced = std::getenv("KUMI_TRANSPORT");
  if (forced && std::string(forced) == "tcp") return "tcp";
  return sameNode ? "shm" : "tcp";
}

struct Buffers {
  std::vector<std::byte> data;
  explicit Buffers(std::uint64_t bytes) : data(std::max<std::uint64_t>(bytes, 8)) {}
};

// Latency of one direction: 8-byte round trips started by this rank, answered by `peer`.
double pingSide(const World& w, int peer, const P2POptions& o, Buffers& b) {
  std::vector<double> rtt;
  for (int i = 0; i < o.latencyIters; ++i) {
    const auto t0 = Clock::now();
    check(kumiSend(b.data.data(), 8, kumiUint8, peer, w.comm, nullptr), "latency send");
    check(kumiRecv(b.data.data(), 8, kumiUint8, peer, w.comm, nullptr), "latency recv");
    rtt.push_back(secondsSince(t0));
  }
  return median(rtt) / 2;
}

void pongSide(const World& w, int peer, const P2POptions& o, Buffers& b) {
  for (int i = 0; i < o.latencyIters; ++i) {
    check(kumiRecv(b.data.data(), 8, kumiUint8, peer, w.comm, nullptr), "latency recv");
    check(kumiSend(b.data.data(), 8, kumiUint8, peer, w.comm, nullptr), "latency send");
  }
}

// Bandwidth of one direction: samples of `messages` messages closed by a one-byte
// acknowledgement (so the time covers delivery, not buffering).
void sendSide(const World& w, int peer, const P2POptions& o, Buffers& b, Record* r) {
  std::vector<double> bw;
  for (int k = 0; k < o.repeats; ++k) {
    const auto t0 = Clock::now();
    for (int m = 0; m < o.messages; ++m)
      check(kumiSend(b.data.data(), o.bytes, kumiUint8, peer, w.comm, nullptr), "bandwidth send");
    check(kumiRecv(b.data.data(), 1, kumiUint8, peer, w.comm, nullptr), "acknowledgement");
    bw.push_back(static_cast<double>(o.bytes) * o.messages / secondsSince(t0));
    r->samples[k] = bw.back();
  }
  r->bandwidth = median(bw);
  r->spread = r->bandwidth > 0 ? (quantile(bw, 0.9) - quantile(bw, 0.1)) / r->bandwidth : 0;
  r->repeats = o.repeats;
}

void receiveSide(const World& w, int peer, const P2POptions& o, Buffers& b) {
  for (int k = 0; k < o.repeats; ++k) {
    for (int m = 0; m < o.messages; ++m)
      check(kumiRecv(b.data.data(), o.bytes, kumiUint8, peer, w.comm, nullptr), "bandwidth recv");
    check(kumiSend(b.data.data(), 1, kumiUint8, peer, w.comm, nullptr), "acknowledgement");
  }
}

// Both directions between this rank and `peer` (the lower node's rank first): latencies of the
// whole round first, then, after a barrier, bandwidths, so that no round trip waits in a queue
// behind another pair's stream on a shared link (rails of a virtual cluster share one).
Record exchange(const World& w, int peer, bool first, int rail, const P2POptions& o, Buffers& b) {
  Record r;
  if (peer >= 0) {
    r.valid = 1;
    r.src = w.nodeOf[static_cast<std::size_t>(w.rank)];
    r.dst = w.nodeOf[static_cast<std::size_t>(peer)];
    r.rail = rail;
    r.sameNode = r.src == r.dst;
    if (first) {
      r.latency = pingSide(w, peer, o, b);
      pongSide(w, peer, o, b);
    } else {
      pongSide(w, peer, o, b);
      r.latency = pingSide(w, peer, o, b);
    }
  }
  check(kumiBarrier(w.comm, nullptr), "barrier between latency and bandwidth");
  if (peer >= 0) {
    if (first) {
      sendSide(w, peer, o, b, &r);
      receiveSide(w, peer, o, b);
    } else {
      receiveSide(w, peer, o, b);
      sendSide(w, peer, o, b, &r);
    }
  }
  return r;
}

std::vector<LinkResult> gather(const World& w, const Record& mine) {
  std::vector<Record> all(static_cast<std::size_t>(w.size));
  check(kumiAllGather(&mine, all.data(), sizeof(Record), kumiUint8, w.comm, nullptr), "gathering the round");
  std::vector<LinkResult> out;
  for (const Record& r : all) {
    if (!r.valid) continue;
    LinkResult l;
    l.key = {r.src, r.dst, r.rail, transportBetween(r.sameNode != 0)};
    l.bandwidth = r.bandwidth;
    l.latency = r.latency;
    l.spread = r.spread;
    l.repeats = r.repeats;
    l.samples.assign(r.samples, r.samples + std::min(r.repeats, kMaxRepeats));
    l.error.assign(r.error, strnlen(r.error, sizeof r.error));
    out.push_back(std::move(l));
  }
  std::sort(out.begin(), out.end(), [](const LinkResult& a, const LinkResult& b) { return a.key < b.key; });
  return out;
}

}  // namespace

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool agreeWithRank0(const World& w, bool yes) {
  int v = yes ? 1 : 0;
  check(kumiBroadcast(&v, &v, 1, kumiInt32, 0, w.comm, nullptr), "agreeing with rank 0");
  return v != 0;
}

World discoverWorld(kumiComm_t comm) {
  World w;
  w.comm = comm;
  check(kumiCommRank(comm, &w.rank), "kumiCommRank");
  check(kumiCommSize(comm, &w.size), "kumiCommSize");
  std::vector<int> host(static_cast<std::size_t>(w.size));
  for (int r = 0; r < w.size; ++r) check(kumiCommHost(comm, r, &host[static_cast<std::size_t>(r)]), "kumiCommHost");
  // The node's name in reports: the Kubernetes node (KUMI_NODE_NAME from the downward API's
  // spec.nodeName), else the host identity given to kumi, else the host name (a pod's own name
  // unless it runs on the host network).
  char mine[64] = {};
  if (const char* given = std::getenv("KUMI_NODE_NAME"); given && *given) std::strncpy(mine, given, sizeof mine - 1);
  else if (const char* id = std::getenv("KUMI_HOSTID"); id && *id) std::strncpy(mine, id, sizeof mine - 1);
  else ::gethostname(mine, sizeof mine - 1);
  std::vector<char> names(static_cast<std::size_t>(w.size) * sizeof mine);
  check(kumiAllGather(mine, names.data(), sizeof mine, kumiUint8, comm, nullptr), "gathering host names");
  std::map<int, int> nodeOfHost;
  w.nodeOf.resize(static_cast<std::size_t>(w.size));
  w.localIndex.resize(static_cast<std::size_t>(w.size));
  for (int r = 0; r < w.size; ++r) {
    const auto [it, fresh] = nodeOfHost.emplace(host[static_cast<std::size_t>(r)], w.nodes());
    if (fresh) {
      w.ranksOf.emplace_back();
      const char* n = names.data() + static_cast<std::size_t>(r) * sizeof mine;
      w.nodeNames.emplace_back(n, strnlen(n, sizeof mine));
    }
    w.nodeOf[static_cast<std::size_t>(r)] = it->second;
    auto& ranks = w.ranksOf[static_cast<std::size_t>(it->second)];
    w.localIndex[static_cast<std::size_t>(r)] = static_cast<int>(ranks.size());
    ranks.push_back(r);
  }
  // Two nodes with one host name (containers sharing the host's UTS namespace): tell them apart.
  std::map<std::string, int> seen;
  for (auto& n : w.nodeNames)
    if (seen[n]++ > 0) n.append(1, '#').append(std::to_string(seen[n] - 1));
  return w;
}

std::vector<LinkResult> measureRound(const World& w, const std::vector<Pair>& round, const P2POptions& o) {
  Buffers b(o.bytes);
  const int myNode = w.nodeOf[static_cast<std::size_t>(w.rank)];
  const int myRail = w.localIndex[static_cast<std::size_t>(w.rank)];
  int peer = -1;
  bool first = false;
  for (const Pair& p : round) {
    if (p.a != myNode && p.b != myNode) continue;
    const int other = p.a == myNode ? p.b : p.a;
    const auto& theirs = w.ranksOf[static_cast<std::size_t>(other)];
    if (myRail < static_cast<int>(theirs.size())) {  // else the other node has no rank on this rail
      peer = theirs[static_cast<std::size_t>(myRail)];
      first = p.a == myNode;
    }
    break;
  }
  return gather(w, exchange(w, peer, first, myRail, o, b));
}

std::vector<LinkResult> measureIntraNode(const World& w, const P2POptions& o) {
  Buffers b(o.bytes);
  const auto& local = w.ranksOf[static_cast<std::size_t>(w.nodeOf[static_cast<std::size_t>(w.rank)])];
  const int me = w.localIndex[static_cast<std::size_t>(w.rank)];
  const int peer = local.size() >= 2 && me < 2 ? local[static_cast<std::size_t>(1 - me)] : -1;
  return gather(w, exchange(w, peer, me == 0, 0, o, b));  // rail 0: no NIC involved
}

std::vector<AllreduceRow> allreduceSweep(const World& w, const SweepOptions& o, const Deadline& deadline,
                                         std::vector<std::string>* notes) {
  struct Variant {
    std::string label;
    kumiComm_t comm;
    CommHandle owned;
  };
  std::vector<Variant> variants;
  variants.push_back({"auto", w.comm, {nullptr, &kumiCommDestroy}});
  for (const auto& a : o.algorithms) {
    const std::string spec = "allreduce:" + a;
    ScopedEnv env("KUMI_ALGO", spec.c_str());
    kumiComm_t c = nullptr;
    const kumiResult_t r = kumiCommInitFromEnv(&c);
    // Every rank reads the same KUMI_ALGO and refuses the same names, together.
    if (r == kumiInvalidArgument && std::strstr(kumiGetLastError(), "KUMI_ALGO")) {
      notes->push_back("allreduce " + a + " skipped: " + kumiGetLastError());
      continue;
    }
    check(r, ("a communicator with KUMI_ALGO=" + spec).c_str());
    variants.push_back({a, c, {c, &kumiCommDestroy}});
  }
  std::vector<AllreduceRow> rows;
  const double n = w.size;
  for (std::uint64_t bytes : o.sizes) {
    const std::uint64_t count = std::max<std::uint64_t>(1, bytes / 4);
    std::vector<float> in(count, 1.0f), out(count);
    for (auto& v : variants) {
      if (!agreeWithRank0(w, !deadline.expired())) {
        notes->push_back("budget reached during the allreduce sweep (at " + std::to_string(bytes) + " bytes, " +
                         v.label + ")");
        return rows;
      }
      check(kumiAllReduce(in.data(), out.data(), count, kumiFloat32, kumiSum, v.comm, nullptr), "warm-up allreduce");
      std::vector<double> times;
      for (int k = 0; k < o.repeats; ++k) {
        check(kumiBarrier(v.comm, nullptr), "barrier");
        const auto t0 = Clock::now();
        for (int i = 0; i < o.iters; ++i)
          check(kumiAllReduce(in.data(), out.data(), count, kumiFloat32, kumiSum, v.comm, nullptr), "allreduce");
        double t = secondsSince(t0) / o.iters, slowest = 0;
        check(kumiAllReduce(&t, &slowest, 1, kumiFloat64, kumiMax, w.comm, nullptr), "allreduce(max)");
        times.push_back(slowest);
      }
      const char* ran = nullptr;
      check(kumiCommGetAlgorithm(v.comm, &ran), "kumiCommGetAlgorithm");
      AllreduceRow row;
      row.algorithm = v.label;
      row.ran = ran && *ran ? ran : "?";
      row.bytes = count * 4;
      row.timeUs = median(times) * 1e6;
      for (double t : times) row.samplesUs.push_back(t * 1e6);
      row.busbw = row.timeUs > 0 ? static_cast<double>(row.bytes) * 2 * (n - 1) / n / (row.timeUs * 1e-6) : 0;
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace kumi::netcheck
