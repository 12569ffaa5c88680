#include "collectives/executor.hpp"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.hpp"
#include "core/reduce.hpp"

namespace kumi {
namespace {
// Staging buffers bound the receives that reduce in flight: up to 8 of them, within 32 MiB,
// whatever slice size is configured (at least 2, so that receiving overlaps reducing).
constexpr std::size_t kMaxStagingBuffers = 8;
constexpr std::size_t kStagingBudgetBytes = 32u << 20;
}  // namespace

std::size_t Executor::bytesHeld() const {
  std::size_t b = scratch_.capacity();
  for (const auto& s : staging_) b += s.capacity();
  return b;
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

  const std::size_t stagingBytes = static_cast<std::size_t>(ps.schedule.maxRecvReduceCount()) * bufs.elemSize;
  if (stagingBytes > 0) {
    const std::size_t count = std::clamp<std::size_t>(kStagingBudgetBytes / stagingBytes, 2, kMaxStagingBuffers);
    if (staging_.size() != count) staging_.resize(count);
    for (auto& s : staging_)
      if (s.size() < stagingBytes) s.resize(stagingBytes);
  }
  freeStaging_.clear();
  for (int i = static_cast<int>(staging_.size()) - 1; i >= 0; --i) freeStaging_.push_back(i);

  remaining_.assign(ps.depCount.begin(), ps.depCount.end());
  ready_.assign(n, 0);
  head_.assign(ps.channelSteps.size(), 0);
  requests_.assign(n, Request{});
  stagingOf_.assign(n, -1);
  std::size_t done = 0;

  // Completing a step releases its dependents; local steps run as soon as they are ready.
  auto complete = [&](std::uint32_t i) {
    ++done;
    ready_[i] = 2;  // 0 waiting, 1 ready or started, 2 done
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
  // Starts the ready steps at the head of channel c, in order.
  auto pumpChannel = [&](int c) {
    const auto& list = ps.channelSteps[static_cast<std::size_t>(c)];
    std::size_t& h = head_[static_cast<std::size_t>(c)];
    while (h < list.size() && ready_[list[h]]) {
      const std::uint32_t i = list[h];
      const Step& st = steps[i];
      Request* req = &requests_[i];
      req->step = i;
      if (st.kind == StepKind::Send) {
        tp->postSend(st.peer, bufs.at(st.src), bufs.bytes(st.src), req);
      } else if (st.kind == StepKind::Recv) {
        tp->postRecv(st.peer, bufs.at(st.dst), bufs.bytes(st.dst), req);
      } else {  // RecvReduce needs a staging buffer
        if (freeStaging_.empty()) break;
        int sidx = freeStaging_.back();
        freeStaging_.pop_back();
        stagingOf_[i] = sidx;
        tp->postRecv(st.peer, staging_[static_cast<std::size_t>(sidx)].data(), bufs.bytes(st.dst), req);
      }
      ++h;
    }
  };
  auto drainWork = [&]() {
    while (!work_.empty()) {
      std::uint32_t i = work_.back();
      work_.pop_back();
      ready_[i] = 1;
      // Local steps complete here; channel steps when the transport reports them.
      int c = ps.channelOf[i];
      if (c < 0) {
        runLocal(i);
        complete(i);
      } else {
        pumpChannel(c);
      }
    }
  };

  work_.clear();
  for (std::uint32_t i = 0; i < n; ++i)
    if (remaining_[i] == 0) work_.push_back(i);
  // Start in schedule order so that channel heads come first.
  std::reverse(work_.begin(), work_.end());
  drainWork();

  int idle = 0;
  while (done < n) {
    if (p.abortFlag && p.abortFlag->load(std::memory_order_relaxed))
      fail(kumiAborted, "the communicator was aborted (kumiCommAbort)");
    completed_.clear();
    bool moved = tp->progress(completed_);
    bool freedStaging = false;
    for (Request* req : completed_) {
      const std::uint32_t i = req->step;
      const Step& st = steps[i];
      if (st.kind == StepKind::RecvReduce) {
        int sidx = stagingOf_[i];
        reduceBuffers(p.type, p.op, bufs.at(st.dst), bufs.at(st.src), staging_[static_cast<std::size_t>(sidx)].data(),
                      static_cast<std::size_t>(st.dst.count));
        freeStaging_.push_back(sidx);
        freedStaging = true;
      }
      complete(i);
    }
    drainWork();
    if (freedStaging)
      for (std::size_t c = 0; c < ps.channelSteps.size(); ++c)
        if (ps.channelIsRecv[c]) pumpChannel(static_cast<int>(c));
    drainWork();
    if (moved || !completed_.empty()) {
      idle = 0;
      continue;
    }
    if (p.deadline.expired()) {
      // Name the peers we still wait for: unfinished receives, then unfinished sends.
      std::set<int> from, to;
      for (std::size_t c = 0; c < ps.channelSteps.size(); ++c) {
        const auto& list = ps.channelSteps[c];
        bool pending = std::any_of(list.begin(), list.end(), [&](std::uint32_t i) { return ready_[i] != 2; });
        if (pending) (ps.channelIsRecv[c] ? from : to).insert(ps.channelPeer[c]);
      }
      std::string waiting;
      for (int r : from) waiting += cat(waiting.empty() ? "" : ", ", p.peerName ? p.peerName(r) : cat("rank ", r));
      std::string sending;
      for (int r : to) sending += cat(sending.empty() ? "" : ", ", p.peerName ? p.peerName(r) : cat("rank ", r));
      fail(kumiTimeout, "timed out with ", n - done, " of ", n, " steps unfinished",
           waiting.empty() ? "" : "; still waiting for data from ", waiting,
           sending.empty() ? "" : "; still sending to ", sending);
    }
    // Readiness comes only through events (edge-triggered): poll them without blocking for a
    // few rounds, yielding the CPU in between, then block.
    if (++idle < p.spinBeforeBlock) {
      sched_yield();
      tp->waitForEvents(0);
      continue;
    }
    tp->waitForEvents(std::min(p.deadline.msLeft(), 200));
  }
}

}  // namespace kumi
