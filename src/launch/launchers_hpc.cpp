// Per-process launchers outside Kubernetes' pod model: Open MPI's mpirun (also under the MPI
// Operator), Slurm's srun, and kumi's own variables (kumirun sets them; users may too).
#include <sstream>

#include <algorithm>
#include <functional>

#include "core/error.hpp"
#include "launch/hostlist.hpp"
#include "launch/launchers.hpp"

namespace kumi::launch {

// Explicit KUMI_* (README, environment variables): what kumirun sets for every rank.
Launcher explicitKumi() {
  return Launcher{
      "explicit", Scope::Process,
      [](const Context& c) {
        for (const char* v : {"KUMI_RANK", "KUMI_WORLD_SIZE", "KUMI_LOCAL_RANK", "KUMI_LOCAL_SIZE", "KUMI_NODE_RANK",
                              "KUMI_STORE", "KUMI_JOB_ID", "KUMI_GENERATION", "KUMI_INCARNATION"})
          if (c.has(v)) return true;
        return false;
      },
      {{"KUMI_RANK", Field::Rank, Parse::Index},
       {"KUMI_WORLD_SIZE", Field::WorldSize, Parse::Count},
       {"KUMI_LOCAL_RANK", Field::LocalRank, Parse::Index},
       {"KUMI_LOCAL_SIZE", Field::LocalSize, Parse::Count},
       {"KUMI_NODE_RANK", Field::NodeRank, Parse::Index},
       {"KUMI_STORE", Field::Host, Parse::HostPort},
       {"KUMI_JOB_ID", Field::JobId, Parse::Text},
       {"KUMI_GENERATION", Field::Generation, Parse::Index},
       {"KUMI_INCARNATION", Field::Incarnation, Parse::Index}},
      {}};
}

namespace {

// First host of an Open MPI hostfile ("host slots=4", "host:4" for MPICH-style, "# comments").
std::optional<std::string> firstHostfileEntry(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string host;
    if (words >> host) return host.substr(0, host.find(':'));
  }
  return std::nullopt;
}

}  // namespace

// Open MPI (mpirun/prterun; ompi/runtime/ompi_rte.c and the ess modules): every process gets
// OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK, and PMIX_NAMESPACE (the
// job's name), among many OMPI_*/PMIX_* others. _NODE_RANK is not the node's index (it is the
// process's rank on its node across all jobs, Open MPI's mpirun(1)): no node index comes from
// it. The MPI Operator (kubeflow/mpi-operator) mounts the hostfile at /etc/mpi/hostfile on the
// launcher and points OMPI_MCA_orte_default_hostfile (Open MPI 4) or
// PRTE_MCA_prte_default_hostfile (5) at it; mpirun's default by-slot mapping puts rank 0 on its
// first host, the coordinator. Worker pods may not have the file.
Launcher openMpi() {
  return Launcher{
      "openmpi", Scope::Process,
      [](const Context& c) { return c.has("OMPI_COMM_WORLD_RANK"); },
      {{"OMPI_COMM_WORLD_RANK", Field::Rank, Parse::Index},
       {"OMPI_COMM_WORLD_SIZE", Field::WorldSize, Parse::Count},
       {"OMPI_COMM_WORLD_LOCAL_RANK", Field::LocalRank, Parse::Index},
       {"OMPI_COMM_WORLD_LOCAL_SIZE", Field::LocalSize, Parse::Count},
       {"PMIX_NAMESPACE", Field::JobId, Parse::Text}},
      [](const Context& c, LaunchInfo& info) {
        if (!c.files().read) return;
        std::string path = c.get("OMPI_MCA_orte_default_hostfile")
                               .value_or(c.get("PRTE_MCA_prte_default_hostfile").value_or("/etc/mpi/hostfile"));
        auto text = c.files().read(path);
        if (!text) return;
        auto host = firstHostfileEntry(*text);
        if (!host) fail(kumiInvalidArgument, "Open MPI hostfile ", path, " lists no host");
        info.coordinatorHost.set(*host, path + "[0]");
      }};
}

// Slurm's srun (srun(1), OUTPUT ENVIRONMENT VARIABLES): SLURM_PROCID (rank), SLURM_NTASKS and
// SLURM_STEP_NUM_TASKS (the step's tasks, which may be fewer than the job's), SLURM_LOCALID,
// SLURM_NODEID (the node's index in the step), SLURM_NNODES / SLURM_STEP_NUM_NODES,
// SLURM_STEP_NODELIST (compressed, "node[01-03,07]"), SLURM_STEP_TASKS_PER_NODE ("2(x3),1"),
// SLURM_JOB_ID, SLURM_STEP_ID; SLURM_RESTART_COUNT counts requeues (sbatch(1)). The first node
// of the step hosts task 0 with the default block distribution: the coordinator.
Launcher slurm() {
  return Launcher{
      "slurm", Scope::Process,
      [](const Context& c) { return c.has("SLURM_PROCID"); },
      {{"SLURM_PROCID", Field::Rank, Parse::Index},
       {"SLURM_STEP_NUM_TASKS", Field::WorldSize, Parse::Count},
       {"SLURM_NTASKS", Field::WorldSize, Parse::Count},
       {"SLURM_LOCALID", Field::LocalRank, Parse::Index},
       {"SLURM_NODEID", Field::NodeRank, Parse::Index},
       {"SLURM_STEP_NUM_NODES", Field::NodeCount, Parse::Count},
       {"SLURM_NNODES", Field::NodeCount, Parse::Count},
       {"SLURM_RESTART_COUNT", Field::Generation, Parse::Index}},
      [](const Context& c, LaunchInfo& info) {
        // Two steps of one allocation are two jobs to kumi.
        if (auto job = c.get("SLURM_JOB_ID")) {
          if (auto step = c.get("SLURM_STEP_ID")) info.jobId.set(*job + "." + *step, "SLURM_JOB_ID.SLURM_STEP_ID");
          else info.jobId.set(*job, "SLURM_JOB_ID");
        }
        for (const char* var : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}) {
          auto list = c.get(var);
          if (!list) continue;
          auto hosts = expandHostlist(*list, var);
          info.coordinatorHost.set(hosts.front(), std::string(var) + "[0]");
          info.nodeHost = [hosts](long long n) {
            return n >= 0 && n < static_cast<long long>(hosts.size()) ? hosts[static_cast<std::size_t>(n)] : std::string();
          };
          info.nodeHostSource = var;
          if (std::string(var) == "SLURM_STEP_NODELIST" && info.nodeCount &&
              *info.nodeCount != static_cast<long long>(hosts.size()))
            fail(kumiInvalidArgument, "Slurm: ", info.nodeCount.source, "=", *info.nodeCount,
                 " but SLURM_STEP_NODELIST lists ", hosts.size(), " nodes");
          break;
        }
        for (const char* var : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
          auto list = c.get(var);
          if (!list || !info.nodeRank) continue;
          auto counts = expandTaskCounts(*list, var);
          if (*info.nodeRank >= static_cast<long long>(counts.size()))
            fail(kumiInvalidArgument, "Slurm: SLURM_NODEID=", *info.nodeRank, " but ", var, "='", *list, "' covers ",
                 counts.size(), " nodes");
          info.localSize.set(counts[static_cast<std::size_t>(*info.nodeRank)], cat(var, "[", *info.nodeRank, "]"));
          // Node of rank r = r / tasks per node only when every node runs as many.
          if (std::adjacent_find(counts.begin(), counts.end(), std::not_equal_to<>()) != counts.end()) info.nodeHost = nullptr;
          break;
        }
      }};
}

}  // namespace kumi::launch
