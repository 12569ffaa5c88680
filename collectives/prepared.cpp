#include "collectives/prepared.hpp"

#include <map>

namespace kumi {

PreparedSchedule::PreparedSchedule(Schedule s)
    : schedule(std::move(s)), peers(schedule.peers()), maxRecvReduceCount(schedule.maxRecvReduceCount()) {
  const auto& steps = schedule.steps;
  const std::size_t n = steps.size();
  depCount.resize(n);
  std::vector<std::uint32_t> outDegree(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    depCount[i] = steps[i].depCount;
    for (std::uint32_t d = 0; d < steps[i].depCount; ++d) ++outDegree[schedule.deps[steps[i].depBegin + d]];
  }
  dependentsBegin.assign(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) dependentsBegin[i + 1] = dependentsBegin[i] + outDegree[i];
  dependents.resize(dependentsBegin[n]);
  std::vector<std::uint32_t> fill(dependentsBegin.begin(), dependentsBegin.end() - 1);
  for (std::size_t i = 0; i < n; ++i)
    for (std::uint32_t d = 0; d < steps[i].depCount; ++d)
      dependents[fill[schedule.deps[steps[i].depBegin + d]]++] = static_cast<std::uint32_t>(i);

  std::map<std::pair<int, bool>, int> ids;
  channelOf.assign(n, -1);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& st = steps[i];
    if (st.peer < 0) continue;
    const bool isRecv = st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce;
    auto [it, inserted] = ids.try_emplace({st.peer, isRecv}, static_cast<int>(channelSteps.size()));
    if (inserted) {
      channelSteps.emplace_back();
      channelPeer.push_back(st.peer);
      channelIsRecv.push_back(isRecv);
      channelReduces.push_back(false);
    }
    if (st.kind == StepKind::RecvReduce) channelReduces[static_cast<std::size_t>(it->second)] = true;
    channelOf[i] = it->second;
    channelSteps[static_cast<std::size_t>(it->second)].push_back(static_cast<std::uint32_t>(i));
  }
}

}  // namespace kumi
