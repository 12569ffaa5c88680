#include "collectives/executor.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.hpp"
#include "core/reduce.hpp"

namespace kumi {
namespace {
// Staging buffers hold receives that reduce: each receiving channel has its own pool of 2..8
// slices, within 32 MiB in all, whatever slice size is configured.
constexpr std::size_t kMaxStagingPerChannel = 8;
constexpr std::size_t kStagingBudgetBytes = 32u << 20;
}  // namespace

void failStuck(const PreparedSchedule& ps, const ExecParams& p, std::size_t unfinished,
               const std::function<bool(std::uint32_t)>& pending) {
  std::set<int> from, to;
  for (std::size_t c = 0; c < ps.channelSteps.size(); ++c) {
    const auto& list = ps.channelSteps[c];
    if (std::any_of(list.begin(), list.end(), pending)) (ps.channelIsRecv[c] ? from : to).insert(ps.channelPeer[c]);
  }
  auto names = [&](const std::set<int>& ranks) {
    std::string s;
    for (int r : ranks) s += cat(s.empty() ? "" : ", ", p.peerName ? p.peerName(r) : cat("rank ", r));
    return s;
  };
  const std::string waiting = names(from), sending = names(to);
  fail(kumiTimeout, "timed out with ", unfinished, " of ", ps.schedule.steps.size(), " steps unfinished",
       waiting.empty() ? "" : "; still waiting for data from ", waiting, sending.empty() ? "" : "; still sending to ",
       sending);
}

std::byte* Executor::scratch(std::size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_.data();
}

void Executor::run(const PreparedSchedule& ps, const Buffers& bufs, Transport* tp, const ExecParams& p) {
  const auto& steps = ps.schedule.steps;
  const std::size_t n = steps.size();
  if (n == 0) return;
  if (tp == nullptr && !ps.channelSteps.empty()) fail(kumiInternalError, "schedule needs peers but there is no transport");
  const std::size_t channels = ps.channelSteps.size();

  // Staging pools, one per channel that reduces: a receive into staging has no memory hazard,
  // so it is posted as soon as its channel allows, and the reduce waits for the step's
  // dependencies. Separate pools keep one channel from starving another.
  const std::size_t stagingBytes = static_cast<std::size_t>(ps.maxRecvReduceCount) * bufs.elemSize;
  const std::size_t reducing = static_cast<std::size_t>(std::count(ps.channelReduces.begin(), ps.channelReduces.end(), true));
  // Cleared, not reassigned: the pools keep their capacity, so a call allocates nothing.
  if (freeStaging_.size() < channels) freeStaging_.resize(channels);
  for (auto& pool : freeStaging_) pool.clear();
  if (stagingBytes > 0 && reducing > 0) {
    const std::size_t per =
        std::clamp<std::size_t>(kStagingBudgetBytes / (stagingBytes * reducing), 2, kMaxStagingPerChannel);
    if (staging_.size() != per * reducing) staging_.resize(per * reducing);
    for (auto& s : staging_)
      if (s.size() < stagingBytes) s.resize(stagingBytes);
    int next = 0;
    for (std::size_t c = 0; c < channels; ++c)
      if (ps.channelReduces[c])
        for (std::size_t k = 0; k < per; ++k) freeStaging_[c].push_back(next++);
  }

  remaining_.assign(ps.depCount.begin(), ps.depCount.end());
  ready_.assign(n, 0);  // 0 waiting for dependencies, 1 ready (or running), 2 done
  received_.assign(n, 0);
  head_.assign(channels, 0);
  requests_.assign(n, Request{});
  stagingOf_.assign(n, -1);
  std::size_t done = 0;

  auto complete = [&](std::uint32_t i) {
    ++done;
    ready_[i] = 2;
    for (std::uint32_t d = ps.dependentsBegin[i]; d < ps.dependentsBegin[i + 1]; ++d) {
      std::uint32_t j = ps.dependents[d];
      if (--remaining_[j] == 0) work_.push_back(j);
    }
  };
  auto runLocal = [&](std::uint32_t i) {
    const Step& st = steps[i];
    if (st.kind == StepKind::Copy) {
      std::byte* dst = bufs.at(st.dst);
      const std::byte* src = bufs.at(st.src);
      if (dst != src) std::memcpy(dst, src, bufs.bytes(st.dst));
    } else if (st.kind == StepKind::Divide) {
      divideInPlace(p.type, bufs.at(st.dst), static_cast<std::size_t>(st.dst.count), static_cast<std::uint64_t>(p.worldSize));
    }
  };
  // Starts steps at the head of channel c, in order: sends and plain receives once their
  // dependencies are done, receives that reduce as soon as a staging buffer is free.
  auto pumpChannel = [&](std::size_t c) {
    const auto& list = ps.channelSteps[c];
    std::size_t& h = head_[c];
    while (h < list.size()) {
      const std::uint32_t i = list[h];
      const Step& st = steps[i];
      Request* req = &requests_[i];
      req->step = i;
      if (st.kind == StepKind::RecvReduce) {
        if (freeStaging_[c].empty()) break;
        int sidx = freeStaging_[c].back();
        freeStaging_[c].pop_back();
        stagingOf_[i] = sidx;
        tp->postRecv(st.peer, staging_[static_cast<std::size_t>(sidx)].data(), bufs.bytes(st.dst), req);
      } else if (!ready_[i]) {
        break;
      } else if (st.kind == StepKind::Send) {
        tp->postSend(st.peer, bufs.at(st.src), bufs.bytes(st.src), req);
      } else {
        tp->postRecv(st.peer, bufs.at(st.dst), bufs.bytes(st.dst), req);
      }
      ++h;
    }
  };
  // A receive that reduces finishes when its data is in and its dependencies are done.
  auto finishReduce = [&](std::uint32_t i) {
    const Step& st = steps[i];
    const int sidx = stagingOf_[i];
    reduceBuffers(p.type, p.op, bufs.at(st.dst), bufs.at(st.src), staging_[static_cast<std::size_t>(sidx)].data(),
                  static_cast<std::size_t>(st.dst.count));
    const auto c = static_cast<std::size_t>(ps.channelOf[i]);
    freeStaging_[c].push_back(sidx);
    complete(i);
    pumpChannel(c);
  };
  auto drainWork = [&]() {
    while (!work_.empty()) {
      std::uint32_t i = work_.back();
      work_.pop_back();
      ready_[i] = 1;
      const int c = ps.channelOf[i];
      if (c < 0) {
        runLocal(i);
        complete(i);
      } else if (steps[i].kind == StepKind::RecvReduce) {
        if (received_[i]) finishReduce(i);
      } else {
        pumpChannel(static_cast<std::size_t>(c));
      }
    }
  };

  work_.clear();
  for (std::uint32_t i = 0; i < n; ++i)
    if (remaining_[i] == 0) work_.push_back(i);
  std::reverse(work_.begin(), work_.end());  // schedule order, so channel heads come first
  for (std::size_t c = 0; c < channels; ++c) pumpChannel(c);
  drainWork();

  IdleWait idle(p);
  while (done < n) {
    idle.checkAbort();
    completed_.clear();
    bool moved = tp->progress(completed_);
    for (Request* req : completed_) {
      const std::uint32_t i = req->step;
      if (steps[i].kind != StepKind::RecvReduce) {
        complete(i);
      } else {
        received_[i] = 1;
        if (ready_[i]) finishReduce(i);
      }
      drainWork();
    }
    if (moved || !completed_.empty()) {
      idle.moved();
      continue;
    }
    idle.wait(tp, true, [&] { failStuck(ps, p, n - done, [&](std::uint32_t i) { return ready_[i] != 2; }); });
  }
}

}  // namespace kumi
