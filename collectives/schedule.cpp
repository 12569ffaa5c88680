#include "collectives/schedule.hpp"

#include <algorithm>

namespace kumi {

const char* collectiveName(Collective c) {
  switch (c) {
    case Collective::AllReduce: return "allreduce";
    case Collective::ReduceScatter: return "reduce_scatter";
    case Collective::AllGather: return "allgather";
    case Collective::Broadcast: return "broadcast";
    case Collective::Reduce: return "reduce";
    case Collective::Barrier: return "barrier";
    case Collective::Send: return "send";
    case Collective::Recv: return "recv";
    case Collective::AllToAll: return "alltoall";
  }
  return "unknown";
}

const char* stepKindName(StepKind k) {
  switch (k) {
    case StepKind::Send: return "send";
    case StepKind::Recv: return "recv";
    case StepKind::RecvReduce: return "recv-reduce";
    case StepKind::Copy: return "copy";
    case StepKind::Divide: return "divide";
  }
  return "unknown";
}

std::uint32_t Schedule::add(const Step& s, const std::vector<std::uint32_t>& after) {
  Step step = s;
  step.depBegin = static_cast<std::uint32_t>(deps.size());
  step.depCount = static_cast<std::uint32_t>(after.size());
  deps.insert(deps.end(), after.begin(), after.end());
  steps.push_back(step);
  return static_cast<std::uint32_t>(steps.size() - 1);
}

std::uint32_t Schedule::add(const Step& s, std::initializer_list<std::uint32_t> after) {
  return add(s, std::vector<std::uint32_t>(after));
}

std::vector<int> Schedule::peers() const {
  std::vector<int> out;
  for (const auto& s : steps)
    if (s.peer >= 0) out.push_back(s.peer);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::uint64_t Schedule::maxRecvReduceCount() const {
  std::uint64_t m = 0;
  for (const auto& s : steps)
    if (s.kind == StepKind::RecvReduce) m = std::max(m, s.dst.count);
  return m;
}

}  // namespace kumi
