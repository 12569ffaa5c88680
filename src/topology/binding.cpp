#include "topology/binding.hpp"

#include <algorithm>
#include <cctype>

#include "core/env.hpp"
#include "core/error.hpp"
#include "topology/affinity.hpp"
#include "topology/machine_loader.hpp"

namespace kumi::topo {
namespace {

struct Domain {
  int numaNode = -1;
  std::vector<const Core*> cores;
};

// The NUMA nodes a rank can be placed on: those with cores, once per distinct set of cores
// (memory-only nodes and nodes that repeat another's CPUs, like HBM beside DDR, add no place).
std::vector<Domain> numaDomains(const Machine& m) {
  std::vector<Domain> out;
  for (const NumaNode& n : m.numaNodes) {
    auto cores = coresOfNumaNode(m, n.osIndex);
    if (cores.empty()) continue;
    out.push_back({n.osIndex, std::move(cores)});
  }
  if (out.empty() && !m.cores.empty()) {  // no NUMA information: the machine is one place
    Domain all;
    for (const Core& c : m.cores) all.cores.push_back(&c);
    out.push_back(std::move(all));
  }
  return out;
}

void planNuma(const Machine& m, BindPlan& plan) {
  auto domains = numaDomains(m);
  if (domains.empty()) fail(kumiInvalidArgument, "cannot bind: ", m.source, " reports no cores");
  int count = static_cast<int>(domains.size());
  const Domain& d = domains[plan.localRank % count];
  // Ranks i with i mod count == this domain, and this rank's position among them.
  int first = plan.localRank % count;
  plan.sharers = (plan.localSize - first + count - 1) / count;
  plan.share = plan.localRank / count;
  plan.numaNode = d.numaNode;

  int cores = static_cast<int>(d.cores.size());
  int begin = static_cast<int>(static_cast<long long>(plan.share) * cores / plan.sharers);
  int end = static_cast<int>(static_cast<long long>(plan.share + 1) * cores / plan.sharers);
  end = std::max(end, begin + 1);  // more ranks than cores: ranks share a core rather than get none
  CpuList cpus;
  for (int c = begin; c < end; ++c) cpus.insert(cpus.end(), d.cores[c]->pus.begin(), d.cores[c]->pus.end());
  plan.cpus = normalized(std::move(cpus));
}

}  // namespace

std::string_view bindModeName(BindMode mode) {
  switch (mode) {
    case BindMode::Off: return "off";
    case BindMode::Numa: return "numa";
    case BindMode::Device: return "device";
  }
  return "unknown";
}

BindMode parseBindMode(std::string_view text, std::string_view source) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (BindMode m : {BindMode::Off, BindMode::Numa, BindMode::Device})
    if (lower == bindModeName(m)) return m;
  fail(kumiInvalidArgument, source, "='", text, "' is not a binding mode: use off, numa or device");
}

BindMode bindModeFromEnv() {
  auto v = envString("KUMI_BIND");
  return v ? parseBindMode(*v) : BindMode::Off;
}

BindPlan planBinding(const Machine& machine, int localRank, int localSize, BindMode mode) {
  KUMI_REQUIRE_ARG(localSize >= 1, "local size ", localSize, " must be at least 1");
  KUMI_REQUIRE_ARG(localRank >= 0 && localRank < localSize, "local rank ", localRank,
                   " is outside [0, ", localSize, ")");
  BindPlan plan;
  plan.requested = plan.used = mode;
  plan.localRank = localRank;
  plan.localSize = localSize;
  if (mode == BindMode::Off) return plan;
  if (mode == BindMode::Device) {
    if (!machine.gpus.empty()) {
      plan.gpu = localRank % static_cast<int>(machine.gpus.size());
      plan.cpus = machine.gpus[plan.gpu].closeCpus;
      if (!plan.cpus.empty()) return plan;
      plan.note = cat("GPU ", plan.gpu, " has no CPU locality");
      plan.gpu = -1;
    } else {
      plan.note = "no GPU found";
    }
    plan.note += ", bound as numa";
    plan.used = BindMode::Numa;
  }
  planNuma(machine, plan);
  return plan;
}

std::string BindPlan::describe() const {
  std::string out = cat("local rank ", localRank, "/", localSize, ": ");
  switch (used) {
    case BindMode::Off: return out + "not bound (KUMI_BIND=off)";
    case BindMode::Numa:
      out += numaNode >= 0 ? cat("numa node ", numaNode) : std::string("all cores");
      out += cat(" (slice ", share + 1, "/", sharers, ")");
      break;
    case BindMode::Device: out += cat("gpu ", gpu); break;
  }
  out += cat(" -> cpus ", formatCpuList(cpus));
  if (!note.empty()) out += cat(" [device: ", note, "]");
  return out;
}

BindOutcome applyBinding(const Machine& machine, int localRank, int localSize, BindMode mode) {
  BindOutcome outcome{planBinding(machine, localRank, localSize, mode), false, ""};
  if (outcome.plan.used == BindMode::Off) {
    outcome.message = outcome.plan.describe();
    return outcome;
  }
  bindThisProcess(outcome.plan.cpus);
  outcome.applied = true;
  outcome.message = cat("KUMI_BIND=", bindModeName(mode), ": bound ", outcome.plan.describe());
  return outcome;
}

BindOutcome applyBinding(int localRank, int localSize) {
  BindMode mode = bindModeFromEnv();
  if (mode == BindMode::Off) return applyBinding(Machine{}, localRank, localSize, mode);
  return applyBinding(loadLocalMachine(), localRank, localSize, mode);
}

}  // namespace kumi::topo
