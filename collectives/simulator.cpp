#include "collectives/simulator.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <queue>
#include <tuple>

#include "core/error.hpp"

namespace kumi {
namespace {

struct Event {
  double time;
  int rank;
  std::uint32_t step;
  bool operator>(const Event& o) const { return std::tie(time, rank, step) > std::tie(o.time, o.rank, o.step); }
};

struct Message {
  double arrival;
  std::uint64_t bytes;
  // A rendezvous (SimCluster::intraEagerBytes): the receiver copies, for this long.
  double pullSeconds = 0;
};

}  // namespace

SimResult simulate(const std::vector<PreparedSchedule>& schedules, const SimCluster& c, std::size_t elemSize,
                   int calls, int warmup) {
  const int n = static_cast<int>(schedules.size());
  SimResult result;
  if (static_cast<int>(c.hostOf.size()) != n) {
    result.error = cat("cluster has ", c.hostOf.size(), " ranks, schedules ", n);
    return result;
  }
  if (calls < 1 || warmup < 0) {
    result.error = cat("calls must be at least 1 and warmup calls at least 0, got ", calls, " and ", warmup);
    return result;
  }
  int hosts = 0;
  for (int h : c.hostOf) hosts = std::max(hosts, h + 1);
  std::vector<int> localIndex(static_cast<std::size_t>(n));
  {
    std::vector<int> seen(static_cast<std::size_t>(hosts), 0);
    for (int r = 0; r < n; ++r) localIndex[static_cast<std::size_t>(r)] = seen[static_cast<std::size_t>(c.hostOf[static_cast<std::size_t>(r)])]++;
  }
  const int nics = std::max(1, c.nicsPerHost);
  std::vector<double> cpuFree(static_cast<std::size_t>(n), 0);  // each rank's own thread
  // A host's cores, when its ranks outnumber them: CPU work (reductions, copies, shared-memory
  // transfers) waits for a free core as well as for its own rank. Ranks that wait for messages
  // sleep and leave their cores to the busy ones, so an algorithm whose work falls on a few ranks
  // (a tree's inner nodes) runs them at full speed, while one that keeps every rank busy (a ring)
  // shares the cores out; a blanket ranks/cores slowdown priced the two alike.
  std::vector<std::vector<double>> coreFree(static_cast<std::size_t>(hosts));
  if (c.coresPerHost > 0) {
    std::vector<int> ranksOn(static_cast<std::size_t>(hosts), 0);
    for (int h : c.hostOf) ++ranksOn[static_cast<std::size_t>(h)];
    for (int h = 0; h < hosts; ++h)
      if (ranksOn[static_cast<std::size_t>(h)] > c.coresPerHost)
        coreFree[static_cast<std::size_t>(h)].assign(static_cast<std::size_t>(c.coresPerHost), 0);
  }
  // Whether each host's buffers fit its cache: the highest element any step touches, per buffer.
  std::vector<double> hostBytes(static_cast<std::size_t>(hosts), 0);
  for (int r = 0; r < n; ++r) {
    std::uint64_t send = 0, recv = 0;
    auto see = [&](const Span& sp) {
      if (sp.count == 0) return;
      if (sp.buf == Buf::Send) send = std::max(send, sp.offset + sp.count);
      if (sp.buf == Buf::Recv) recv = std::max(recv, sp.offset + sp.count);
    };
    for (const Step& st : schedules[static_cast<std::size_t>(r)].schedule.steps) {
      see(st.src);
      see(st.dst);
    }
    hostBytes[static_cast<std::size_t>(c.hostOf[static_cast<std::size_t>(r)])] +=
        static_cast<double>((send + recv + schedules[static_cast<std::size_t>(r)].schedule.scratchCount) * elemSize);
  }
  struct Rates {
    double copy, reduce, intraGbps;
  };
  std::vector<Rates> rates(static_cast<std::size_t>(hosts), Rates{c.copyGbps, c.reduceGbps, c.intra.gbps});
  for (int h = 0; h < hosts; ++h)
    // Half the cache: the transports' rings and staging, and everything else the ranks touch,
    // share it. Measured here (32 MiB L3, 4 ranks): 16 MiB of buffers ran at cache speed, 32 not.
    if (c.cacheBytes > 0 && 2 * hostBytes[static_cast<std::size_t>(h)] <= c.cacheBytes)
      rates[static_cast<std::size_t>(h)] = {c.cachedCopyGbps, c.cachedReduceGbps, c.intra.gbps * c.cachedCopyGbps / c.copyGbps};
  auto ratesOf = [&](int r) -> const Rates& { return rates[static_cast<std::size_t>(c.hostOf[static_cast<std::size_t>(r)])]; };
  // Runs `seconds` of rank r's CPU work that is ready at `ready`; returns when it ends.
  auto runOnCpu = [&](int r, double ready, double seconds) {
    double& own = cpuFree[static_cast<std::size_t>(r)];
    auto& cores = coreFree[static_cast<std::size_t>(c.hostOf[static_cast<std::size_t>(r)])];
    double start = std::max(ready, own);
    if (!cores.empty()) {
      auto core = std::min_element(cores.begin(), cores.end());
      start = std::max(start, *core);
      *core = start + seconds;
    }
    own = start + seconds;
    return own;
  };
  auto staged = [&](bool local) { return c.stagingGbps > 0 && (!local || c.stagedInsideHost); };
  auto nicOf = [&](int r) {
    return static_cast<std::size_t>(c.hostOf[static_cast<std::size_t>(r)] * nics + localIndex[static_cast<std::size_t>(r)] % nics);
  };
  // When each shared resource is next free.
  std::vector<double> egressFree(static_cast<std::size_t>(hosts * nics), 0), ingressFree(static_cast<std::size_t>(hosts * nics), 0);
  // Token buckets of shaped NICs: bytes up to the tokens go at the peak rate.
  const bool shaped = c.nicBurstBytes > 0 && c.nicPeakGbps > c.nic.gbps;
  struct Bucket {
    double tokens, at = 0;  // bytes, and when they were counted
    double burst, rate, peak;
    // Seconds to send `bytes` from `start`; takes the tokens.
    double transfer(double start, double bytes) {
      tokens = std::min(burst, tokens + (start - at) * rate);
      const double fast = std::min(tokens, bytes);
      const double seconds = fast / peak + (bytes - fast) / rate;
      tokens = bytes <= tokens ? std::min(burst, tokens - bytes + seconds * rate) : 0;
      at = start + seconds;
      return seconds;
    }
  };
  const Bucket fresh{c.nicBurstBytes, 0, c.nicBurstBytes, c.nic.gbps * 1e9, c.nicPeakGbps * 1e9};
  std::vector<Bucket> egressBucket(static_cast<std::size_t>(hosts * nics), fresh), ingressBucket = egressBucket;
  // Each rank starts its next call when it has finished its own last one (no barrier between
  // calls, as in a training loop or kumi-bench); links, CPUs and token buckets carry over.
  std::vector<double> callStart(static_cast<std::size_t>(n), 0);
  double timedFrom = 0;
  for (int call = 0; call < warmup + calls; ++call) {
    std::map<std::pair<int, int>, std::deque<Message>> mail;  // (from, to), in sending order
    // A receive whose message has not been sent yet waits here: (from, to) -> parked events.
    std::map<std::pair<int, int>, std::deque<Event>> parked;

    struct RankState {
      std::vector<std::uint32_t> remaining;
      std::vector<double> depsDone;  // latest completion among a step's dependencies
      std::vector<std::size_t> head;  // next step per channel
      std::vector<double> channelAt;  // when that channel's previous step started
      std::size_t done = 0;
      double finished = 0;
    };
    std::vector<RankState> st(static_cast<std::size_t>(n));
    std::priority_queue<Event, std::vector<Event>, std::greater<>> queue;
    auto eligible = [&](int r, std::uint32_t i) {
      const auto& ps = schedules[static_cast<std::size_t>(r)];
      auto& s = st[static_cast<std::size_t>(r)];
      if (s.remaining[i] != 0) return;
      const int ch = ps.channelOf[i];
      if (ch >= 0 && ps.channelSteps[static_cast<std::size_t>(ch)][s.head[static_cast<std::size_t>(ch)]] != i) return;
      const double t = ch >= 0 ? std::max(s.depsDone[i], s.channelAt[static_cast<std::size_t>(ch)]) : s.depsDone[i];
      queue.push({t, r, i});
    };
    auto complete = [&](int r, std::uint32_t i, double t) {
      const auto& ps = schedules[static_cast<std::size_t>(r)];
      auto& s = st[static_cast<std::size_t>(r)];
      ++s.done;
      s.finished = std::max(s.finished, t);
      for (auto d = ps.dependentsBegin[i]; d < ps.dependentsBegin[i + 1]; ++d) {
        const std::uint32_t j = ps.dependents[d];
        s.depsDone[j] = std::max(s.depsDone[j], t);
        if (--s.remaining[j] == 0) eligible(r, j);
      }
    };
    // A channel step has started: the next one on its channel may become eligible.
    auto advanceChannel = [&](int r, std::uint32_t i, double t) {
      const auto& ps = schedules[static_cast<std::size_t>(r)];
      auto& s = st[static_cast<std::size_t>(r)];
      const auto ch = static_cast<std::size_t>(ps.channelOf[i]);
      s.channelAt[ch] = t;
      if (++s.head[ch] < ps.channelSteps[ch].size()) eligible(r, ps.channelSteps[ch][s.head[ch]]);
    };

    for (int r = 0; r < n; ++r) {
      const auto& ps = schedules[static_cast<std::size_t>(r)];
      auto& s = st[static_cast<std::size_t>(r)];
      s.remaining = ps.depCount;
      s.depsDone.assign(ps.schedule.steps.size(), callStart[static_cast<std::size_t>(r)]);
      s.head.assign(ps.channelSteps.size(), 0);
      s.channelAt.assign(ps.channelSteps.size(), callStart[static_cast<std::size_t>(r)]);
      s.finished = callStart[static_cast<std::size_t>(r)];
      for (std::uint32_t i = 0; i < ps.schedule.steps.size(); ++i) eligible(r, i);
    }

    while (!queue.empty()) {
      const Event e = queue.top();
      queue.pop();
      const auto& ps = schedules[static_cast<std::size_t>(e.rank)];
      const Step& step = ps.schedule.steps[e.step];
      const double bytes = static_cast<double>((step.kind == StepKind::Send ? step.src.count : step.dst.count) * elemSize);
      switch (step.kind) {
        case StepKind::Copy:
        case StepKind::Divide:
          complete(e.rank, e.step, runOnCpu(e.rank, e.time, bytes / (ratesOf(e.rank).copy * 1e9)));
          break;
        case StepKind::Send: {
          const int to = step.peer;
          const bool local = c.hostOf[static_cast<std::size_t>(e.rank)] == c.hostOf[static_cast<std::size_t>(to)];
          // A staged message leaves once the sender's GPU has copied it out.
          const double ready = staged(local) ? runOnCpu(e.rank, e.time, bytes / (c.stagingGbps * 1e9)) : e.time;
          double start, finish, latency;
          const bool pulled = local && c.intraEagerBytes > 0 && bytes > c.intraEagerBytes && !staged(local);
          if (pulled) {
            start = finish = ready;
            latency = c.intra.latencyUs * 1e-6;
          } else if (local) {
            // Inside a host the bytes move by CPU copies (rings, cross-memory attach): a rank
            // sending to several peers at once copies for one after the other.
            const double seconds = c.intra.overheadUs * 1e-6 + bytes / (ratesOf(e.rank).intraGbps * 1e9);
            finish = runOnCpu(e.rank, ready, seconds);
            start = finish - seconds;
            latency = c.intra.latencyUs * 1e-6;
          } else {
            // The sender's NIC and the receiver's are queues of their own: bytes leave when the
            // egress is free and are taken in when the ingress is, the fabric buffering between
            // them. Holding both for the whole message made a rank that feeds several peers
            // (a tree's inner nodes, halving partners across hosts) wait for the busiest of their
            // receivers before it sent anything, and those waits spread from rank to rank.
            double& out = egressFree[nicOf(e.rank)];
            double& in = ingressFree[nicOf(to)];
            const double overhead = c.nic.overheadUs * 1e-6;
            start = std::max(ready, out);
            const double wireOut =
                shaped ? egressBucket[nicOf(e.rank)].transfer(start, bytes) : bytes / (c.nic.gbps * 1e9);
            out = start + overhead + wireOut;
            const double inStart = std::max(start, in);
            const double wireIn =
                shaped ? ingressBucket[nicOf(to)].transfer(inStart, bytes) : bytes / (c.nic.gbps * 1e9);
            in = inStart + overhead + wireIn;
            finish = std::max(out, in);
            latency = c.nic.latencyUs * 1e-6;
          }
          ++result.messages;
          // The latency (measured end to end, mostly software on both sides) overlaps the bytes'
          // transfer: a message arrives once its bytes are through and its latency has passed.
          Message m{std::max(finish, start + latency), static_cast<std::uint64_t>(bytes)};
          if (pulled) m.pullSeconds = c.intra.overheadUs * 1e-6 + bytes / (ratesOf(e.rank).intraGbps * 1e9);
          mail[{e.rank, to}].push_back(m);
          // Wake a receive that was waiting for this message.
          auto& waiting = parked[{e.rank, to}];
          if (!waiting.empty()) {
            queue.push(waiting.front());
            waiting.pop_front();
          }
          advanceChannel(e.rank, e.step, start);
          // A descriptor's send is done in the model once posted, though the real one waits until
          // the receiver has read it. Completing it at the receiver's read would deadlock the
          // model where that receive depends on this send (recursive doubling in place: the
          // received sums overwrite what was sent); the executor posts such a receive into a
          // staging buffer ahead of its dependencies, and the model has no step for that. So
          // steps that wait for the send (to reuse its buffer) may run early here.
          complete(e.rank, e.step, pulled ? start + latency : finish);
          break;
        }
        case StepKind::Recv:
        case StepKind::RecvReduce: {
          auto& box = mail[{step.peer, e.rank}];
          if (box.empty()) {
            parked[{step.peer, e.rank}].push_back(e);
            break;
          }
          if (box.front().arrival > e.time) {
            // Come back when it has arrived: handling it now would book the CPU for a reduction
            // in the future, ahead of work that becomes ready before then.
            queue.push({box.front().arrival, e.rank, e.step});
            break;
          }
          const Message m = box.front();
          box.pop_front();
          if (m.bytes != static_cast<std::uint64_t>(bytes)) {
            result.error = cat("rank ", e.rank, " expected ", bytes, " bytes from rank ", step.peer, ", got ", m.bytes);
            return result;
          }
          double t = e.time;
          const bool local = c.hostOf[static_cast<std::size_t>(e.rank)] == c.hostOf[static_cast<std::size_t>(step.peer)];
          if (m.pullSeconds > 0) t = runOnCpu(e.rank, t, m.pullSeconds);
          if (staged(local)) {
            // Copied in, or reduced by a kernel that reads the pinned buffer: the slower of the two.
            const double gbps =
                step.kind == StepKind::RecvReduce ? std::min(ratesOf(e.rank).reduce, c.stagingGbps) : c.stagingGbps;
            t = runOnCpu(e.rank, t, bytes / (gbps * 1e9));
          } else if (step.kind == StepKind::RecvReduce) {
            t = runOnCpu(e.rank, t, bytes / (ratesOf(e.rank).reduce * 1e9));
          }
          advanceChannel(e.rank, e.step, e.time);
          complete(e.rank, e.step, t);
          break;
        }
      }
    }
    for (int r = 0; r < n; ++r) {
      const auto& s = st[static_cast<std::size_t>(r)];
      if (s.done != schedules[static_cast<std::size_t>(r)].schedule.steps.size()) {
        result.error = cat("deadlock: rank ", r, " finished ", s.done, " of ", schedules[static_cast<std::size_t>(r)].schedule.steps.size(), " steps");
        return result;
      }
      callStart[static_cast<std::size_t>(r)] = s.finished;
    }
    const double end = *std::max_element(callStart.begin(), callStart.end());
    if (call + 1 == warmup) timedFrom = end;
    result.seconds = (end - timedFrom) / calls;
  }
  return result;
}

}  // namespace kumi
