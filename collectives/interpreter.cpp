#include "collectives/interpreter.hpp"

#include <cstring>
#include <deque>
#include <map>

#include "core/error.hpp"
#include "core/reduce.hpp"
#include "core/types.hpp"

namespace kumi {

std::string interpret(const std::vector<PreparedSchedule>& schedules, const std::vector<RankCall>& calls,
                      kumiDataType_t type, kumiRedOp_t op) {
  const int n = static_cast<int>(schedules.size());
  const std::size_t es = typeSize(type);
  struct RankState {
    Buffers bufs;
    std::vector<std::byte> scratch;
    std::vector<std::uint32_t> remaining;
    std::vector<std::size_t> head;
    std::vector<std::uint32_t> readyLocal;
    std::vector<char> ready;
    std::size_t done = 0;
  };
  std::vector<RankState> st(static_cast<std::size_t>(n));
  std::map<std::pair<int, int>, std::deque<std::vector<std::byte>>> mail;  // (from, to)
  for (int r = 0; r < n; ++r) {
    auto& s = st[static_cast<std::size_t>(r)];
    const auto& ps = schedules[static_cast<std::size_t>(r)];
    s.scratch.resize(static_cast<std::size_t>(ps.schedule.scratchCount) * es);
    s.bufs = Buffers{static_cast<const std::byte*>(calls[static_cast<std::size_t>(r)].send),
                     static_cast<std::byte*>(calls[static_cast<std::size_t>(r)].recv), s.scratch.data(), es};
    s.remaining = ps.depCount;
    s.head.assign(ps.channelSteps.size(), 0);
    s.ready.assign(ps.schedule.steps.size(), 0);
  }
  auto complete = [&](int r, std::uint32_t i) {
    auto& s = st[static_cast<std::size_t>(r)];
    const auto& ps = schedules[static_cast<std::size_t>(r)];
    ++s.done;
    for (auto d = ps.dependentsBegin[i]; d < ps.dependentsBegin[i + 1]; ++d) --s.remaining[ps.dependents[d]];
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < n; ++r) {
      auto& s = st[static_cast<std::size_t>(r)];
      const auto& ps = schedules[static_cast<std::size_t>(r)];
      const auto& steps = ps.schedule.steps;
      for (std::uint32_t i = 0; i < steps.size(); ++i) {  // local steps
        if (s.ready[i] || s.remaining[i] != 0 || ps.channelOf[i] >= 0) continue;
        const Step& step = steps[i];
        if (step.kind == StepKind::Copy) {
          if (s.bufs.at(step.dst) != s.bufs.at(step.src)) std::memmove(s.bufs.at(step.dst), s.bufs.at(step.src), s.bufs.bytes(step.dst));
        } else {
          divideInPlace(type, s.bufs.at(step.dst), static_cast<std::size_t>(step.dst.count), static_cast<std::uint64_t>(n));
        }
        s.ready[i] = 1;
        complete(r, i);
        progress = true;
      }
      for (std::size_t c = 0; c < ps.channelSteps.size(); ++c) {
        const auto& list = ps.channelSteps[c];
        while (s.head[c] < list.size() && s.remaining[list[s.head[c]]] == 0) {
          const std::uint32_t i = list[s.head[c]];
          const Step& step = steps[i];
          if (step.peer < 0 || step.peer >= n) return cat("rank ", r, " step ", i, ": peer ", step.peer, " out of range");
          if (step.kind == StepKind::Send) {
            const std::byte* p = s.bufs.at(step.src);
            mail[{r, step.peer}].emplace_back(p, p + s.bufs.bytes(step.src));
          } else {
            auto& box = mail[{step.peer, r}];
            if (box.empty()) break;
            auto msg = std::move(box.front());
            box.pop_front();
            if (msg.size() != s.bufs.bytes(step.dst))
              return cat("rank ", r, " step ", i, " expected ", s.bufs.bytes(step.dst), " bytes from rank ", step.peer,
                         ", got ", msg.size());
            if (step.kind == StepKind::Recv) {
              if (!msg.empty()) std::memcpy(s.bufs.at(step.dst), msg.data(), msg.size());
            } else {
              reduceBuffers(type, op, s.bufs.at(step.dst), s.bufs.at(step.src), msg.data(), static_cast<std::size_t>(step.dst.count));
            }
          }
          s.ready[i] = 1;
          ++s.head[c];
          complete(r, i);
          progress = true;
        }
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    const auto& s = st[static_cast<std::size_t>(r)];
    if (s.done != schedules[static_cast<std::size_t>(r)].schedule.steps.size())
      return cat("deadlock: rank ", r, " finished ", s.done, " of ", schedules[static_cast<std::size_t>(r)].schedule.steps.size(), " steps");
  }
  for (const auto& [key, box] : mail)
    if (!box.empty()) return cat(box.size(), " message(s) from rank ", key.first, " to rank ", key.second, " never received");
  return {};
}

std::string checkHazards(const PreparedSchedule& ps, bool inPlace, std::int64_t sendOffsetFromRecv) {
  const auto& steps = ps.schedule.steps;
  const std::size_t n = steps.size();
  // Memory as intervals in one address space: Send, Recv and Scratch far apart, unless in place.
  constexpr std::int64_t kRecvBase = 1ll << 40, kSendBase = 0, kScratchBase = 2ll << 40;
  auto interval = [&](const Span& s) -> std::pair<std::int64_t, std::int64_t> {
    std::int64_t base = s.buf == Buf::Recv ? kRecvBase : s.buf == Buf::Scratch ? kScratchBase
                        : inPlace ? kRecvBase + sendOffsetFromRecv : kSendBase;
    std::int64_t a = base + static_cast<std::int64_t>(s.offset);
    return {a, a + static_cast<std::int64_t>(s.count)};
  };
  // Ancestors as bitsets (schedules under test are small).
  const std::size_t words = n / 64 + 1;
  std::vector<std::vector<std::uint64_t>> anc(n, std::vector<std::uint64_t>(words, 0));
  for (std::size_t i = 0; i < n; ++i)
    for (std::uint32_t d = 0; d < steps[i].depCount; ++d) {
      std::uint32_t j = ps.schedule.deps[steps[i].depBegin + d];
      if (j >= i) return cat("step ", i, " depends on later step ", j);
      anc[i][j / 64] |= 1ull << (j % 64);
      for (std::size_t w = 0; w < anc[i].size(); ++w) anc[i][w] |= anc[j][w];
    }
  struct Access { std::pair<std::int64_t, std::int64_t> range; bool write; };
  auto accesses = [&](const Step& s) {
    std::vector<Access> out;
    bool srcRead = s.kind == StepKind::Send || s.kind == StepKind::RecvReduce || s.kind == StepKind::Copy;
    if (srcRead && s.src.count) out.push_back({interval(s.src), false});
    if (s.kind != StepKind::Send && s.dst.count) out.push_back({interval(s.dst), true});
    return out;
  };
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < i; ++j) {
      if (anc[i][j / 64] & (1ull << (j % 64))) continue;
      for (const auto& a : accesses(steps[i]))
        for (const auto& b : accesses(steps[j])) {
          bool overlap = a.range.first < b.range.second && b.range.first < a.range.second;
          if (overlap && (a.write || b.write))
            return cat("race: step ", i, " (", stepKindName(steps[i].kind), ") and step ", j, " (",
                       stepKindName(steps[j].kind), ") touch overlapping memory without an ordering dependency");
        }
    }
  return {};
}

}  // namespace kumi
