// Detection: read every launcher whose marks are present, take the innermost per-process one
// (or, in a pod with no per-process launcher, the pod's own), check the others against it, then
// lay explicit KUMI_* over the result and apply the port convention.
#include "launch/launch.hpp"

#include <array>

#include "core/error.hpp"
#include "core/log.hpp"
#include "launch/launchers.hpp"

namespace kumi::launch {

namespace {

// Innermost first: torchrun or mpirun is started by Slurm or in a pod, never the other way.
// Among the pod-level ones, the more specific first (a Trainer v2 pod is also a JobSet pod).
std::vector<Launcher> detectors() {
  return {torchrun(), openMpi(), slurm(), kubeflowTrainer(), volcano(), kubeflowPyTorchJob(),
          jobSet(),   leaderWorkerSet(), indexedJob()};
}

LaunchInfo read(const Context& ctx, const Launcher& l) {
  LaunchInfo info;
  info.launcher = l.name;
  applyRows(ctx, l.rows, info);
  if (l.derive) l.derive(ctx, info);
  return info;
}

std::string show(const Sourced<long long>& f) {
  return f ? cat(*f, " (", f.source, ")") : std::string("?");
}

std::string describe(const LaunchInfo& i) {
  std::string s = i.launcher + ":";
  if (i.rank || i.worldSize) s += cat(" rank ", show(i.rank), " of ", show(i.worldSize));
  if (i.localRank || i.localSize) s += cat(", local ", show(i.localRank), " of ", show(i.localSize));
  if (i.nodeRank || i.nodeCount) s += cat(", node ", show(i.nodeRank), " of ", show(i.nodeCount));
  return s;
}

bool agree(const Sourced<long long>& a, const Sourced<long long>& b) { return !a || !b || *a == *b; }

void fillFrom(Sourced<long long>& to, const Sourced<long long>& from) {
  if (!to && from) to = from;
}

// `outer` (another launcher present) must describe this process (same rank, size and local
// placement) or this process's node (its rank is our node rank: Slurm's one task per node
// that runs torchrun), and its node numbering must match ours. Then it fills our gaps.
void reconcile(LaunchInfo& base, const LaunchInfo& outer, bool outerIsPod, bool baseIsPod) {
  bool perProcess = agree(outer.rank, base.rank) && agree(outer.worldSize, base.worldSize) &&
                    agree(outer.localRank, base.localRank) && agree(outer.localSize, base.localSize);
  // Per node only when it counts fewer than the ranks: with equal counts, it must be this rank.
  bool fewer = !outer.worldSize || !base.worldSize || *outer.worldSize < *base.worldSize;
  bool perNode = outer.rank && fewer && agree(outer.rank, base.nodeRank) && agree(outer.worldSize, base.nodeCount);
  // A per-process launcher in a pod may number the pods its own way (torchrun's c10d rendezvous
  // gives GROUP_RANK in order of arrival): the pod index then differs, the pod count may not.
  bool renumbered = outerIsPod && !baseIsPod && !agree(outer.nodeRank, base.nodeRank);
  bool nodes = (renumbered || agree(outer.nodeRank, base.nodeRank)) && agree(outer.nodeCount, base.nodeCount);
  bool podLocal = !outerIsPod || agree(outer.localSize, base.localSize);
  if (!(perProcess || perNode) || !nodes || !podLocal)
    fail(kumiInvalidArgument, "launchers disagree: ", describe(base), "; but ", describe(outer),
         ". Remove the stale variables, or set KUMI_RANK and KUMI_WORLD_SIZE explicitly");
  if (renumbered) {
    std::string w = cat(base.launcher, " numbered this node ", show(base.nodeRank), ", ", outer.launcher, " says ",
                        show(outer.nodeRank), ": kumi follows ", base.launcher);
    KUMI_WARN("launch: ", w);
    base.warnings.push_back(std::move(w));
  }
  if (perNode && !perProcess) {
    fillFrom(base.nodeRank, outer.rank);
    fillFrom(base.nodeCount, outer.worldSize);
  }
  fillFrom(base.nodeRank, outer.nodeRank);
  fillFrom(base.nodeCount, outer.nodeCount);
  if (!base.coordinatorHost && outer.coordinatorHost) {
    base.coordinatorHost = outer.coordinatorHost;
    base.coordinatorPort = outer.coordinatorPort;
  }
  if (!base.jobId && outer.jobId) base.jobId = outer.jobId;
  fillFrom(base.generation, outer.generation);
  fillFrom(base.incarnation, outer.incarnation);
  if (!base.nodeHost && outer.nodeHost) {
    base.nodeHost = outer.nodeHost;
    base.nodeHostSource = outer.nodeHostSource;
  }
  base.outerLaunchers.push_back(outer.launcher);
}

// A pod with no per-process launcher runs one rank: the pod's index is the rank.
void promotePod(LaunchInfo& pod) {
  if (pod.localSize && *pod.localSize > 1) return;  // several per pod, none told its rank
  if (pod.nodeRank) pod.rank = pod.nodeRank;
  if (pod.nodeCount) pod.worldSize = pod.nodeCount;
  pod.localRank.set(0, "one process per pod");
  if (!pod.localSize) pod.localSize.set(1, "one process per pod");
}

struct IntOverride {
  Sourced<long long> LaunchInfo::*field;
  const char* name;
};

void overlayExplicit(const Context& ctx, LaunchInfo& info) {
  static constexpr std::array<IntOverride, 7> kFields{{{&LaunchInfo::rank, "rank"},
                                                      {&LaunchInfo::worldSize, "world size"},
                                                      {&LaunchInfo::localRank, "local rank"},
                                                      {&LaunchInfo::localSize, "local size"},
                                                      {&LaunchInfo::nodeRank, "node rank"},
                                                      {&LaunchInfo::generation, "generation"},
                                                      {&LaunchInfo::incarnation, "incarnation"}}};
  const Launcher kumi = explicitKumi();
  if (!kumi.present(ctx)) return;
  LaunchInfo x = read(ctx, kumi);
  auto warn = [&](const std::string& var, const std::string& mine, const std::string& theirs, const std::string& from) {
    std::string w = cat(var, "=", mine, " overrides ", from, "=", theirs, " (", info.launcher, ")");
    KUMI_WARN("launch: ", w);
    info.warnings.push_back(std::move(w));
  };
  for (const auto& f : kFields) {
    const auto& mine = x.*(f.field);
    auto& theirs = info.*(f.field);
    if (!mine) continue;
    if (theirs && *theirs != *mine) warn(mine.source, std::to_string(*mine), std::to_string(*theirs), theirs.source);
    theirs = mine;
  }
  if (x.coordinatorHost) {
    if (info.coordinatorHost && *info.coordinatorHost != *x.coordinatorHost)
      warn("KUMI_STORE", *x.coordinatorHost, *info.coordinatorHost, info.coordinatorHost.source);
    info.coordinatorHost = x.coordinatorHost;
    info.coordinatorPort = x.coordinatorPort;
  }
  if (x.jobId) {
    if (info.jobId && *info.jobId != *x.jobId) warn("KUMI_JOB_ID", *x.jobId, *info.jobId, info.jobId.source);
    info.jobId = x.jobId;
  }
  // Only a rank or a world size makes a launcher of the variables: KUMI_JOB_ID alone, in a
  // single-process run, describes no job to join.
  if (!info.detected() && (ctx.has("KUMI_RANK") || ctx.has("KUMI_WORLD_SIZE")))
    info.launcher = ctx.has("KUMI_STORE_SERVE") && ctx.has("KUMI_LOCAL_RANK") ? "kumirun" : "explicit";
}

// KUMI_PORT, else the launcher's port (already +1 where torch owns it), else 29501.
void applyPortConvention(const Context& ctx, LaunchInfo& info) {
  if (!info.coordinatorHost || info.coordinatorHost.source == "KUMI_STORE") return;
  if (info.coordinatorHost->rfind("file://", 0) == 0) return;
  if (auto p = ctx.get("KUMI_PORT")) info.coordinatorPort.set(parseNumber("KUMI_PORT", *p, 1, 65535), "KUMI_PORT");
  if (!info.coordinatorPort) info.coordinatorPort.set(kDefaultCoordinatorPort, "default (29500+1)");
}

void requireBelow(const Sourced<long long>& a, const char* what, const Sourced<long long>& b, const char* bound) {
  if (a && b && *a >= *b)
    fail(kumiInvalidArgument, what, " ", *a, " (", a.source, ") is not below the ", bound, " ", *b, " (",
         b.source, ")");
}

void validate(const LaunchInfo& info, const std::string& worldHint) {
  requireBelow(info.rank, "rank", info.worldSize, "world size");
  requireBelow(info.localRank, "local rank", info.localSize, "local size");
  requireBelow(info.nodeRank, "node rank", info.nodeCount, "node count");
  if (!info.detected()) return;
  if (!info.rank)
    fail(kumiInvalidArgument, describe(info), ": no rank for this process",
         info.localSize && *info.localSize > 1
         ? cat(" (", info.localSize.source, "=", *info.localSize,
         " processes per pod, but no per-process launcher such as torchrun numbered them: set KUMI_RANK and ",
         "KUMI_LOCAL_RANK, or start them with one)")
         : std::string(": set KUMI_RANK"));
  if (!info.worldSize)
    fail(kumiInvalidArgument, describe(info), ": no world size: ",
         worldHint.empty() ? std::string("set KUMI_WORLD_SIZE") : worldHint);
  if (info.localSize && *info.localSize > *info.worldSize)
    fail(kumiInvalidArgument, "local size ", *info.localSize, " (", info.localSize.source, ") exceeds the world size ",
         *info.worldSize, " (", info.worldSize.source, ")");
  if (info.nodeCount && *info.nodeCount > *info.worldSize)
    fail(kumiInvalidArgument, "node count ", *info.nodeCount, " (", info.nodeCount.source, ") exceeds the world size ",
         *info.worldSize, " (", info.worldSize.source, ")");
}

}  // namespace

LaunchInfo detect(const Environment& env, const std::string& hostname, const FileSystem& files) {
  Context ctx(env, hostname, files);
  std::vector<std::pair<const Launcher*, LaunchInfo>> found;
  const std::vector<Launcher> all = detectors();
  for (const Launcher& l : all)
    if (l.present(ctx)) found.emplace_back(&l, read(ctx, l));

  LaunchInfo info;
  std::string worldHint;
  if (!found.empty()) {
    // The base: the first per-process reading, else the first pod's, promoted to a rank.
    std::size_t base = 0;
    while (base < found.size() && found[base].first->scope != Scope::Process) ++base;
    if (base == found.size()) {
      base = 0;
      promotePod(found[0].second);
    }
    info = found[base].second;
    if (found[base].first->missingWorldHint) worldHint = found[base].first->missingWorldHint;
    for (std::size_t i = 0; i < found.size(); ++i)
      if (i != base)
        reconcile(info, found[i].second, found[i].first->scope == Scope::Pod, found[base].first->scope == Scope::Pod);
  }
  overlayExplicit(ctx, info);
  applyPortConvention(ctx, info);
  validate(info, worldHint);
  return info;
}

LaunchInfo detect(const Environment& env, const std::string& hostname) {
  return detect(env, hostname, realFileSystem());
}

}  // namespace kumi::launch
