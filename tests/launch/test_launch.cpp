// Launch detection against each launcher's real variable set (as the launcher or operator
// sets it, unrelated variables included), contradictions, malformed values and KUMI_* overrides.
#include <gtest/gtest.h>

#include <map>

#include "core/error.hpp"
#include "launch/hostlist.hpp"
#include "launch/launch.hpp"
#include "launch/launch_report.hpp"

namespace kumi::launch {
namespace {


using Files = std::map<std::string, std::string>;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

FileSystem fakeFiles(const Files& files) {
  FileSystem fs;
  fs.read = [files](const std::string& path) -> std::optional<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return std::nullopt;
    return it->second;
  };
  fs.listDir = [files](const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& [path, text] : files)
      if (path.rfind(dir + "/", 0) == 0) names.push_back(path.substr(dir.size() + 1));
    return names;
  };
  return fs;
}

// Variables every Kubernetes container gets, whatever the controller: they must not matter.
Environment withPodNoise(Environment env, const std::string& hostname) {
  env.emplace("HOSTNAME", hostname);
  env.emplace("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  env.emplace("KUBERNETES_SERVICE_PORT", "443");
  env.emplace("KUBERNETES_PORT", "tcp://10.96.0.1:443");
  env.emplace("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  env.emplace("HOME", "/root");
  return env;
}

LaunchInfo detectWith(const Environment& env, const std::string& hostname = "host", const Files& files = {}) {
  return detect(env, hostname, fakeFiles(files));
}

std::string errorOf(const Environment& env, const std::string& hostname = "host", const Files& files = {}) {
  try {
    detectWith(env, hostname, files);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kumiInvalidArgument);
    return e.what();
  }
  return "(no error)";
}

template <class T>
void expectField(const Sourced<T>& f, const T& value, const std::string& source) {
  ASSERT_TRUE(f) << "expected " << value << " from " << source;
  EXPECT_EQ(*f, value);
  EXPECT_EQ(f.source, source);
}
void expectInt(const Sourced<long long>& f, long long value, const std::string& source) { expectField(f, value,
    source); }
void expectText(const Sourced<std::string>& f, const std::string& value, const std::string& source) {
  expectField(f, value, source);
}

// torchrun --nnodes 2 --nproc-per-node 4, worker 5 (torch 2.x local_elastic_agent).
Environment torchrunEnv() {
  return {{"LOCAL_RANK", "1"},       {"RANK", "5"},
          {"GROUP_RANK", "1"},       {"ROLE_RANK", "5"},
          {"ROLE_NAME", "default"},  {"LOCAL_WORLD_SIZE", "4"},
          {"WORLD_SIZE", "8"},       {"GROUP_WORLD_SIZE", "2"},
          {"ROLE_WORLD_SIZE", "8"},  {"MASTER_ADDR", "node-a.example"},
          {"MASTER_PORT", "29500"},  {"TORCHELASTIC_RESTART_COUNT", "1"},
          {"TORCHELASTIC_MAX_RESTARTS", "3"}, {"TORCHELASTIC_RUN_ID", "job42"},
          {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"},
          {"OMP_NUM_THREADS", "1"},  {"TORCHELASTIC_ERROR_FILE", "/tmp/torchelastic_x/error.json"}};
}

// ---- hostlist --------------------------------------------------------------------------------

TEST(Hostlist, PlainNamesAndRanges) {
  EXPECT_EQ(expandHostlist("gpu5"), (std::vector<std::string>{"gpu5"}));
  EXPECT_EQ(expandHostlist("node[01-03,07],gpu5"), (std::vector<std::string>{"node01", "node02", "node03", "node07",
      "gpu5"}));
  EXPECT_EQ(expandHostlist("a,b[1-2],c"), (std::vector<std::string>{"a", "b1", "b2", "c"}));
}

TEST(Hostlist, LeadingZerosKeepTheWidthOfTheLowerBound) {
  EXPECT_EQ(expandHostlist("n[008-011]"), (std::vector<std::string>{"n008", "n009", "n010", "n011"}));
  EXPECT_EQ(expandHostlist("n[9-10]"), (std::vector<std::string>{"n9", "n10"}));
}

TEST(Hostlist, SeveralBracketsMultiplyOut) {
  EXPECT_EQ(expandHostlist("r[1-2]-n[01,03]"), (std::vector<std::string>{"r1-n01", "r1-n03", "r2-n01", "r2-n03"}));
  EXPECT_EQ(expandHostlist("x[1-2].dc,y"), (std::vector<std::string>{"x1.dc", "x2.dc", "y"}));
}

TEST(Hostlist, MalformedIsAnErrorNamingTheVariable) {
  for (const char* bad : {"node[01-03", "node01-03]", "node[3-1]", "node[a-b]", "node[]", "a,,b", "n[1-[2]]",
                          "", "n[1-2 ]", "n[-3]", ","}) {
    try {
      expandHostlist(bad, "SLURM_STEP_NODELIST");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_PRED2(contains, e.what(), "SLURM_STEP_NODELIST") << bad;
    }
  }
}

TEST(Hostlist, TooManyHostsIsRefused) {
  EXPECT_THROW(expandHostlist("n[0-999999999]", "L", 1000), Error);
  EXPECT_EQ(expandHostlist("n[1-1000]", "L", 1000).size(), 1000u);
}

TEST(Hostlist, TaskCounts) {
  EXPECT_EQ(expandTaskCounts("2(x3),1"), (std::vector<long long>{2, 2, 2, 1}));
  EXPECT_EQ(expandTaskCounts("4"), (std::vector<long long>{4}));
  for (const char* bad : {"2(x)", "2(3)", "x", "2(x3", "", "0"}) EXPECT_THROW(expandTaskCounts(bad), Error) << bad;
}

// ---- one test per launcher -----------------------------------------------------------------

TEST(Launch, NothingDetectedIsNotAnError) {
  LaunchInfo info = detectWith(withPodNoise({{"SHELL", "/bin/bash"}}, "laptop"));
  EXPECT_EQ(info.launcher, "none");
  EXPECT_FALSE(info.detected());
  EXPECT_FALSE(info.rank);
  EXPECT_FALSE(info.coordinatorHost);
}

TEST(Launch, Kumirun) {
  // kumirun -np 4 --nodes 2, rank 3 (src/tools/kumirun.cpp).
  Environment env{{"KUMI_RANK", "3"},        {"KUMI_WORLD_SIZE", "4"},         {"KUMI_LOCAL_RANK", "1"},
                  {"KUMI_LOCAL_SIZE", "2"},  {"KUMI_NODE_RANK", "1"},          {"KUMI_STORE", "127.0.0.1:41234"},
                  {"KUMI_STORE_SERVE", "0"}, {"KUMI_JOB_ID", "kumirun-1234"}, {"KUMI_SECRET", "00ff"},
                  {"KUMI_HOSTID", "kumirun-1234-node1"}};
  LaunchInfo info = detectWith(env);
  EXPECT_EQ(info.launcher, "kumirun");
  expectInt(info.rank, 3, "KUMI_RANK");
  expectInt(info.worldSize, 4, "KUMI_WORLD_SIZE");
  expectInt(info.localRank, 1, "KUMI_LOCAL_RANK");
  expectInt(info.localSize, 2, "KUMI_LOCAL_SIZE");
  expectInt(info.nodeRank, 1, "KUMI_NODE_RANK");
  expectText(info.coordinatorHost, "127.0.0.1", "KUMI_STORE");
  expectInt(info.coordinatorPort, 41234, "KUMI_STORE");
  expectText(info.jobId, "kumirun-1234", "KUMI_JOB_ID");
  EXPECT_TRUE(info.warnings.empty());
}

TEST(Launch, ExplicitWithIpv6AndFileStores) {
  LaunchInfo v6 = detectWith({{"KUMI_RANK", "0"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_STORE", "[fd00::1]:5000"}});
  EXPECT_EQ(v6.launcher, "explicit");
  expectText(v6.coordinatorHost, "fd00::1", "KUMI_STORE");
  expectInt(v6.coordinatorPort, 5000, "KUMI_STORE");
  LaunchInfo file = detectWith({{"KUMI_RANK", "1"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_STORE", "file:///shared/run1"}});
  expectText(file.coordinatorHost, "file:///shared/run1", "KUMI_STORE");
  EXPECT_FALSE(file.coordinatorPort);
}

TEST(Launch, Torchrun) {
  LaunchInfo info = detectWith(torchrunEnv());
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_TRUE(info.outerLaunchers.empty());
  expectInt(info.rank, 5, "RANK");
  expectInt(info.worldSize, 8, "WORLD_SIZE");
  expectInt(info.localRank, 1, "LOCAL_RANK");
  expectInt(info.localSize, 4, "LOCAL_WORLD_SIZE");
  expectInt(info.nodeRank, 1, "GROUP_RANK");
  expectInt(info.nodeCount, 2, "GROUP_WORLD_SIZE");
  expectText(info.coordinatorHost, "node-a.example", "MASTER_ADDR");
  expectInt(info.coordinatorPort, 29501, "MASTER_PORT+1");  // beside torch's store, never on it
  expectText(info.jobId, "job42", "TORCHELASTIC_RUN_ID");
  expectInt(info.generation, 1, "TORCHELASTIC_RESTART_COUNT");
}

TEST(Launch, TorchrunUnderSlurmOneTaskPerNode) {
  // srun --nodes 2 --ntasks-per-node 1 torchrun ...: Slurm numbers the agents, torchrun the ranks.
  Environment env = torchrunEnv();
  env.insert({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "1"},
              {"SLURM_NNODES", "2"}, {"SLURM_STEP_NODELIST", "gpu[07-08]"}, {"SLURM_JOB_ID", "991"},
              {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_TASKS_PER_NODE", "1(x2)"}});
  LaunchInfo info = detectWith(env);
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.outerLaunchers, (std::vector<std::string>{"slurm"}));
  expectInt(info.rank, 5, "RANK");
  expectText(info.coordinatorHost, "node-a.example", "MASTER_ADDR");  // the innermost launcher's
}

TEST(Launch, Slurm) {
  // srun -N 3 -n 6 on node[01-02],gpu5: task 3 on the second node.
  Environment env{{"SLURM_PROCID", "3"},
                  {"SLURM_NTASKS", "6"},
                  {"SLURM_STEP_NUM_TASKS", "6"},
                  {"SLURM_LOCALID", "1"},
                  {"SLURM_NODEID", "1"},
                  {"SLURM_NNODES", "3"},
                  {"SLURM_STEP_NUM_NODES", "3"},
                  {"SLURM_STEP_NODELIST", "node[01-02],gpu5"},
                  {"SLURM_JOB_NODELIST", "node[01-02],gpu5"},
                  {"SLURM_NODELIST", "node[01-02],gpu5"},
                  {"SLURM_STEP_TASKS_PER_NODE", "2(x3)"},
                  {"SLURM_TASKS_PER_NODE", "2(x3)"},
                  {"SLURM_JOB_ID", "123456"},
                  {"SLURM_JOBID", "123456"},
                  {"SLURM_STEP_ID", "2"},
                  {"SLURM_STEPID", "2"},
                  {"SLURM_RESTART_COUNT", "1"},
                  {"SLURM_JOB_NAME", "train"},
                  {"SLURM_CLUSTER_NAME", "cluster"},
                  {"SLURM_CPUS_ON_NODE", "32"},
                  {"SLURM_TASK_PID", "4242"},
                  {"SLURMD_NODENAME", "node02"},
                  {"SLURM_SUBMIT_DIR", "/home/u"},
                  {"SLURM_STEP_LAUNCHER_PORT", "35000"},
                  {"SLURM_SRUN_COMM_HOST", "10.0.0.1"},
                  {"SLURM_DISTRIBUTION", "block"}};
  LaunchInfo info = detectWith(env, "node02");
  EXPECT_EQ(info.launcher, "slurm");
  expectInt(info.rank, 3, "SLURM_PROCID");
  expectInt(info.worldSize, 6, "SLURM_STEP_NUM_TASKS");
  expectInt(info.localRank, 1, "SLURM_LOCALID");
  expectInt(info.localSize, 2, "SLURM_STEP_TASKS_PER_NODE[1]");
  expectInt(info.nodeRank, 1, "SLURM_NODEID");
  expectInt(info.nodeCount, 3, "SLURM_STEP_NUM_NODES");
  expectText(info.coordinatorHost, "node01", "SLURM_STEP_NODELIST[0]");
  expectInt(info.coordinatorPort, kDefaultCoordinatorPort, "default (29500+1)");
  expectText(info.jobId, "123456.2", "SLURM_JOB_ID.SLURM_STEP_ID");
  expectInt(info.generation, 1, "SLURM_RESTART_COUNT");
  ASSERT_TRUE(info.nodeHost);
  EXPECT_EQ(info.nodeHost(2), "gpu5");
  // Nodes running different numbers of tasks: the node of a rank is not rank / tasks, so no names.
  env["SLURM_STEP_TASKS_PER_NODE"] = "2(x2),1";
  env["SLURM_STEP_NUM_TASKS"] = "5";
  EXPECT_FALSE(detectWith(env, "node02").nodeHost);
}

TEST(Launch, SlurmNodelistThatContradictsTheNodeCount) {
  EXPECT_PRED2(contains, errorOf({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_NUM_NODES", "2"},
                       {"SLURM_STEP_NODELIST", "node[1-3]"}}), "SLURM_STEP_NODELIST lists 3");
  EXPECT_PRED2(contains, errorOf({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_NODELIST", "node[3-1]"}}),
      "SLURM_STEP_NODELIST");
}

TEST(Launch, OpenMpiUnderTheMpiOperator) {
  // mpirun -np 4 on an MPIJob with 2 workers x 2 slots; rank 2 (on worker 1).
  Environment env{{"OMPI_COMM_WORLD_RANK", "2"},
                  {"OMPI_COMM_WORLD_SIZE", "4"},
                  {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                  {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                  {"OMPI_COMM_WORLD_NODE_RANK", "1"},
                  {"OMPI_UNIVERSE_SIZE", "4"},
                  {"OMPI_FIRST_RANKS", "0"},
                  {"OMPI_APP_CTX_NUM_PROCS", "4"},
                  {"OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"},
                  {"OMPI_MCA_plm_rsh_agent", "/etc/mpi/kubexec.sh"},
                  {"OMPI_MCA_orte_keep_fqdn_hostnames", "true"},
                  {"OMPI_MCA_ess_base_jobid", "3581411329"},
                  {"PMIX_RANK", "2"},
                  {"PMIX_NAMESPACE", "3581411329"},
                  {"PMIX_SERVER_URI2", "pmix-server.1;tcp4://127.0.0.1:40000"},
                  {"K_MPI_JOB_ROLE", "worker"}};
  Files files{{"/etc/mpi/hostfile",
      "# generated\npi-worker-0.pi-worker.default.svc slots=2\npi-worker-1.pi-worker.default.svc slots=2\n"}};
  LaunchInfo info = detectWith(withPodNoise(env, "pi-worker-1"), "pi-worker-1", files);
  EXPECT_EQ(info.launcher, "openmpi");
  expectInt(info.rank, 2, "OMPI_COMM_WORLD_RANK");
  expectInt(info.worldSize, 4, "OMPI_COMM_WORLD_SIZE");
  expectInt(info.localRank, 0, "OMPI_COMM_WORLD_LOCAL_RANK");
  expectInt(info.localSize, 2, "OMPI_COMM_WORLD_LOCAL_SIZE");
  EXPECT_FALSE(info.nodeRank);  // OMPI_COMM_WORLD_NODE_RANK is a rank on the node, not its index
  expectText(info.coordinatorHost, "pi-worker-0.pi-worker.default.svc", "/etc/mpi/hostfile[0]");
  expectInt(info.coordinatorPort, kDefaultCoordinatorPort, "default (29500+1)");
  expectText(info.jobId, "3581411329", "PMIX_NAMESPACE");
  // Without the hostfile (a worker pod): the ranks, but no coordinator.
  LaunchInfo bare = detectWith(env, "pi-worker-1");
  expectInt(bare.rank, 2, "OMPI_COMM_WORLD_RANK");
  EXPECT_FALSE(bare.coordinatorHost);
}

TEST(Launch, KubeflowPyTorchJobOneProcessPerPod) {
  // training-operator v1.8 PyTorchJob, 1 master + 2 workers, no torchrun: worker 1 = pod 2.
  Environment env{{"MASTER_PORT", "23456"},        {"PET_MASTER_PORT", "23456"},
                  {"MASTER_ADDR", "mnist-master-0"}, {"PET_MASTER_ADDR", "mnist-master-0"},
                  {"WORLD_SIZE", "3"},             {"RANK", "2"},
                  {"PET_NPROC_PER_NODE", "auto"},  {"PET_NODE_RANK", "2"},
                  {"PET_NNODES", "3"},             {"PYTHONUNBUFFERED", "1"}};
  LaunchInfo info = detectWith(withPodNoise(env, "mnist-worker-1"), "mnist-worker-1");
  EXPECT_EQ(info.launcher, "kubeflow-pytorchjob");
  expectInt(info.rank, 2, "PET_NODE_RANK");
  expectInt(info.worldSize, 3, "PET_NNODES");
  expectInt(info.localRank, 0, "one process per pod");
  expectInt(info.localSize, 1, "one process per pod");
  expectText(info.coordinatorHost, "mnist-master-0", "PET_MASTER_ADDR");
  expectInt(info.coordinatorPort, 23457, "PET_MASTER_PORT+1");
  ASSERT_TRUE(info.nodeHost);
  EXPECT_EQ(info.nodeHost(0), "mnist-master-0");
  EXPECT_EQ(info.nodeHost(2), "mnist-worker-1");
}

TEST(Launch, KubeflowPyTorchJobBeforePetVariables) {
  // training-operator before v1.7: only MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK.
  Environment env{{"MASTER_PORT", "23456"}, {"MASTER_ADDR", "mnist-master-0"}, {"WORLD_SIZE", "3"},
                  {"RANK", "0"},            {"PYTHONUNBUFFERED", "0"}};
  LaunchInfo info = detectWith(withPodNoise(env, "mnist-master-0"), "mnist-master-0");
  EXPECT_EQ(info.launcher, "kubeflow-pytorchjob");
  expectInt(info.rank, 0, "RANK");
  expectInt(info.worldSize, 3, "WORLD_SIZE");
  expectInt(info.coordinatorPort, 23457, "MASTER_PORT+1");
}

TEST(Launch, TorchrunInsideAPyTorchJob) {
  // nprocPerNode 4, 2 pods: torchrun overwrote RANK/WORLD_SIZE; PET_* still describe the pod.
  Environment env = torchrunEnv();
  env.insert({{"PET_MASTER_ADDR", "llm-master-0"}, {"PET_MASTER_PORT", "23456"}, {"PET_NNODES", "2"},
              {"PET_NODE_RANK", "1"}, {"PET_NPROC_PER_NODE", "4"}, {"PYTHONUNBUFFERED", "1"}});
  LaunchInfo info = detectWith(withPodNoise(env, "llm-worker-0"), "llm-worker-0");
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.outerLaunchers, (std::vector<std::string>{"kubeflow-pytorchjob"}));
  expectInt(info.rank, 5, "RANK");
  expectInt(info.nodeRank, 1, "GROUP_RANK");
}

TEST(Launch, TorchrunRendezvousMayRenumberThePods) {
  // torchrun --rdzv-backend c10d numbers agents in order of arrival: pod 0 may be group 1.
  Environment env = torchrunEnv();
  env.insert({{"JOB_COMPLETION_INDEX", "0"}});
  LaunchInfo info = detectWith(env, "train-0");
  EXPECT_EQ(info.outerLaunchers, (std::vector<std::string>{"k8s-indexed-job"}));
  expectInt(info.nodeRank, 1, "GROUP_RANK");
  ASSERT_EQ(info.warnings.size(), 1u);
  EXPECT_PRED2(contains, info.warnings[0], "torchrun numbered this node 1 (GROUP_RANK), k8s-indexed-job says 0");
}

TEST(Launch, KubeflowPyTorchJobWithSeveralProcessesButNoTorchrun) {
  Environment env{{"MASTER_ADDR", "m-master-0"}, {"MASTER_PORT", "23456"}, {"PET_MASTER_ADDR", "m-master-0"},
                  {"PET_MASTER_PORT", "23456"},  {"WORLD_SIZE", "8"},      {"RANK", "1"},
                  {"PET_NODE_RANK", "1"},        {"PET_NNODES", "2"},      {"PET_NPROC_PER_NODE", "4"}};
  EXPECT_PRED2(contains, errorOf(env), "PET_NPROC_PER_NODE=4 processes per pod");
  // Explicit ranks resolve it.
  env.insert({{"KUMI_RANK", "5"}, {"KUMI_WORLD_SIZE", "8"}, {"KUMI_LOCAL_RANK", "1"}});
  expectInt(detectWith(env).rank, 5, "KUMI_RANK");
}

TEST(Launch, KubeflowTrainerV2) {
  // TrainJob "llm" on torch-distributed, numNodes 2, 1 process per node, without torchrun.
  Environment env{{"PET_NNODES", "2"},
                  {"PET_NPROC_PER_NODE", "1"},
                  {"PET_NODE_RANK", "1"},
                  {"PET_MASTER_ADDR", "llm-node-0-0.llm"},
                  {"PET_MASTER_PORT", "29400"},
                  {"JOB_COMPLETION_INDEX", "1"}};
  LaunchInfo info = detectWith(withPodNoise(env, "llm-node-0-1"), "llm-node-0-1");
  EXPECT_EQ(info.launcher, "kubeflow-trainer");
  expectInt(info.rank, 1, "PET_NODE_RANK");
  expectInt(info.worldSize, 2, "PET_NNODES");
  expectInt(info.localSize, 1, "PET_NPROC_PER_NODE");
  expectText(info.coordinatorHost, "llm-node-0-0.llm", "PET_MASTER_ADDR");
  expectInt(info.coordinatorPort, 29401, "PET_MASTER_PORT+1");
}

TEST(Launch, IndexedJobWithHeadlessService) {
  Environment env{{"JOB_COMPLETION_INDEX", "2"}, {"KUMI_WORLD_SIZE", "4"}};
  Files files{{"/etc/hosts", "127.0.0.1 localhost\n# Entries added by HostAliases.\n"
                             "10.244.1.7\ttrain-2.train-svc.ml.svc.cluster.local\ttrain-2\n"}};
  LaunchInfo info = detectWith(withPodNoise(env, "train-2"), "train-2", files);
  EXPECT_EQ(info.launcher, "k8s-indexed-job");
  expectInt(info.rank, 2, "JOB_COMPLETION_INDEX");
  expectInt(info.worldSize, 4, "KUMI_WORLD_SIZE");
  expectInt(info.localSize, 1, "one process per pod");
  expectText(info.coordinatorHost, "train-0.train-svc.ml.svc.cluster.local", "hostname + /etc/hosts");
  expectInt(info.coordinatorPort, kDefaultCoordinatorPort, "default (29500+1)");
  expectText(info.jobId, "train", "hostname");
  EXPECT_TRUE(info.warnings.empty());  // KUMI_WORLD_SIZE filled a gap, overrode nothing
  ASSERT_TRUE(info.nodeHost);  // a join that times out names the pods that never came
  EXPECT_EQ(info.nodeHost(0), "train-0");
  EXPECT_EQ(info.nodeHost(3), "train-3");
}

TEST(Launch, IndexedJobNeedsTheWorldSize) {
  EXPECT_PRED2(contains, errorOf(withPodNoise({{"JOB_COMPLETION_INDEX", "2"}}, "train-2"), "train-2"),
      "set KUMI_WORLD_SIZE (completions");
  // KUMI_PORT moves the coordinator port.
  LaunchInfo info = detectWith({{"JOB_COMPLETION_INDEX", "0"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_PORT", "40000"}},
                               "train-0", {{"/etc/hosts", "10.0.0.1 train-0.svc1.ns.svc.cluster.local train-0\n"}});
  expectInt(info.coordinatorPort, 40000, "KUMI_PORT");
}

TEST(Launch, JobSet) {
  // JobSet "js", replicated job "workers" with 2 replicas x 2 completions; the manifest maps the
  // JobSet labels with the downward API. Pod js-workers-1-1 is the 4th.
  Environment env{{"JOBSET_NAME", "js"},
                  {"REPLICATED_JOB_NAME", "workers"},
                  {"JOB_INDEX", "1"},
                  {"JOB_COMPLETION_INDEX", "1"},
                  {"JOBSET_RESTART_ATTEMPT", "2"},
                  {"KUMI_PODS_PER_JOB", "2"},
                  {"KUMI_WORLD_SIZE", "4"}};
  Files files{{"/etc/hosts", "10.0.3.4 js-workers-1-1.js.default.svc.cluster.local js-workers-1-1\n"}};
  LaunchInfo info = detectWith(withPodNoise(env, "js-workers-1-1"), "js-workers-1-1", files);
  EXPECT_EQ(info.launcher, "jobset");
  expectInt(info.rank, 3, "JOB_INDEX*KUMI_PODS_PER_JOB+JOB_COMPLETION_INDEX");
  expectInt(info.worldSize, 4, "KUMI_WORLD_SIZE");
  expectText(info.coordinatorHost, "js-workers-0-0.js.default.svc.cluster.local", "JOBSET_NAME + REPLICATED_JOB_NAME");
  expectText(info.jobId, "js", "JOBSET_NAME");
  expectInt(info.generation, 2, "JOBSET_RESTART_ATTEMPT");
  ASSERT_TRUE(info.nodeHost);
  EXPECT_EQ(info.nodeHost(1), "js-workers-0-1");
  EXPECT_EQ(info.nodeHost(2), "js-workers-1-0");
  // The per-index failure count, mapped from the pod annotation, is this rank's incarnation.
  env["JOB_INDEX_FAILURE_COUNT"] = "3";
  expectInt(detectWith(withPodNoise(env, "js-workers-1-1"), "js-workers-1-1", files).incarnation, 3,
            "JOB_INDEX_FAILURE_COUNT");
}

TEST(Launch, JobSetFromTheHostnameAlone) {
  Environment env{{"JOBSET_NAME", "js"}, {"JOB_COMPLETION_INDEX", "1"}, {"KUMI_WORLD_SIZE", "2"}};
  LaunchInfo info = detectWith(env, "js-trainer-0-1");
  expectInt(info.rank, 1, "JOB_COMPLETION_INDEX");
  expectText(info.coordinatorHost, "js-trainer-0-0.js", "JOBSET_NAME + REPLICATED_JOB_NAME");
}

TEST(Launch, JobSetContradictions) {
  Environment env{{"JOBSET_NAME", "js"}, {"REPLICATED_JOB_NAME", "workers"}, {"JOB_INDEX", "1"},
                  {"JOB_COMPLETION_INDEX", "0"}, {"KUMI_WORLD_SIZE", "4"}};
  EXPECT_PRED2(contains, errorOf(env, "js-workers-1-0"), "KUMI_PODS_PER_JOB");
  env["KUMI_PODS_PER_JOB"] = "2";
  EXPECT_PRED2(contains, errorOf(env, "js-workers-0-0"), "JOB_INDEX=1 but hostname js-workers-0-0");
}

TEST(Launch, Volcano) {
  // vcjob "job" with tasks master (1) and worker (2), svc + env plugins; pod job-worker-1.
  Environment env{{"VC_TASK_INDEX", "1"},
                  {"VK_TASK_INDEX", "1"},
                  {"VC_MASTER_HOSTS", "job-master-0.job"},
                  {"VC_MASTER_NUM", "1"},
                  {"VC_WORKER_HOSTS", "job-worker-0.job,job-worker-1.job"},
                  {"VC_WORKER_NUM", "2"}};
  LaunchInfo info = detectWith(withPodNoise(env, "job-worker-1"), "job-worker-1");
  EXPECT_EQ(info.launcher, "volcano");
  expectInt(info.rank, 2, "VC_TASK_INDEX + earlier tasks");
  expectInt(info.worldSize, 3, "VC_*_HOSTS");
  expectText(info.coordinatorHost, "job-master-0.job", "VC_MASTER_HOSTS[0]");
  expectInt(info.coordinatorPort, kDefaultCoordinatorPort, "default (29500+1)");
  ASSERT_TRUE(info.nodeHost);
  EXPECT_EQ(info.nodeHost(0), "job-master-0");
  EXPECT_EQ(info.nodeHost(2), "job-worker-1");
  EXPECT_EQ(info.nodeHost(3), "");  // beyond the lists: unknown
}

TEST(Launch, VolcanoHostFilesAndPytorchPlugin) {
  // Only the mounted /etc/volcano files, plus the pytorch plugin's variables, which agree.
  Environment env{{"VC_TASK_INDEX", "0"}, {"MASTER_ADDR", "job-master-0.job"}, {"MASTER_PORT", "23456"},
                  {"WORLD_SIZE", "3"},    {"RANK", "1"}};
  Files files{{"/etc/volcano/master.host", "job-master-0.job\n"},
              {"/etc/volcano/worker.host", "job-worker-0.job\njob-worker-1.job\n"}};
  LaunchInfo info = detectWith(env, "job-worker-0", files);
  EXPECT_EQ(info.launcher, "volcano");
  EXPECT_EQ(info.outerLaunchers, (std::vector<std::string>{"kubeflow-pytorchjob"}));
  expectInt(info.rank, 1, "VC_TASK_INDEX + earlier tasks");
  expectInt(info.worldSize, 3, "VC_*_HOSTS");
  // The plugin saying rank 2 contradicts the host files.
  env["RANK"] = "2";
  EXPECT_PRED2(contains, errorOf(env, "job-worker-0", files), "launchers disagree");
}

TEST(Launch, VolcanoIndexThatIsNotThisHost) {
  Environment env{{"VC_TASK_INDEX", "0"}, {"VC_WORKER_HOSTS", "job-worker-0.job,job-worker-1.job"}};
  EXPECT_PRED2(contains, errorOf(env, "job-worker-1"), "is not entry 0 of VC_WORKER_HOSTS");
  EXPECT_PRED2(contains, errorOf({{"VC_TASK_INDEX", "0"}, {"VC_WORKER_HOSTS", "a,b"}, {"VC_WORKER_NUM", "3"}}, "a"),
      "VC_WORKER_NUM=3 but VC_WORKER_HOSTS lists 2");
}

TEST(Launch, LeaderWorkerSet) {
  // LWS "vllm", size 4, group 0, worker 2.
  Environment env{{"LWS_LEADER_ADDRESS", "vllm-0.vllm.default"}, {"LWS_GROUP_SIZE", "4"}, {"LWS_WORKER_INDEX", "2"}};
  LaunchInfo info = detectWith(withPodNoise(env, "vllm-0-2"), "vllm-0-2");
  EXPECT_EQ(info.launcher, "leaderworkerset");
  expectInt(info.rank, 2, "LWS_WORKER_INDEX");
  expectInt(info.worldSize, 4, "LWS_GROUP_SIZE");
  expectText(info.coordinatorHost, "vllm-0.vllm.default", "LWS_LEADER_ADDRESS");
  expectText(info.jobId, "vllm-0.vllm.default", "LWS_LEADER_ADDRESS");
  ASSERT_TRUE(info.nodeHost);
  EXPECT_EQ(info.nodeHost(0), "vllm-0");
  EXPECT_EQ(info.nodeHost(3), "vllm-0-3");
}

// ---- precedence, contradictions, malformed values ----------------------------------------

TEST(Launch, ExplicitKumiWinsAndWarns) {
  Environment env = torchrunEnv();
  env.insert({{"KUMI_RANK", "6"}, {"KUMI_STORE", "store.example:7000"}, {"KUMI_JOB_ID", "mine"}});
  LaunchInfo info = detectWith(env);
  EXPECT_EQ(info.launcher, "torchrun");
  expectInt(info.rank, 6, "KUMI_RANK");
  expectInt(info.worldSize, 8, "WORLD_SIZE");
  expectText(info.coordinatorHost, "store.example", "KUMI_STORE");
  expectInt(info.coordinatorPort, 7000, "KUMI_STORE");
  expectText(info.jobId, "mine", "KUMI_JOB_ID");
  ASSERT_EQ(info.warnings.size(), 3u);
  EXPECT_PRED2(contains, info.warnings[0], "KUMI_RANK=6 overrides RANK=5 (torchrun)");
  EXPECT_PRED2(contains, info.warnings[1], "KUMI_STORE=store.example overrides MASTER_ADDR=node-a.example");
  // Equal values are no news.
  env["KUMI_RANK"] = "5";
  env.erase("KUMI_STORE");
  env.erase("KUMI_JOB_ID");
  EXPECT_TRUE(detectWith(env).warnings.empty());
}

TEST(Launch, KumiVariablesWithoutARankAreNoLauncher) {
  // A single-process run that only names its job: nothing to join, nothing to refuse.
  LaunchInfo info = detectWith({{"KUMI_JOB_ID", "solo"}, {"KUMI_GENERATION", "2"}});
  EXPECT_EQ(info.launcher, "none");
  expectText(info.jobId, "solo", "KUMI_JOB_ID");
  expectInt(info.generation, 2, "KUMI_GENERATION");
  EXPECT_PRED2(contains, errorOf({{"KUMI_LOCAL_RANK", "2"}, {"KUMI_LOCAL_SIZE", "2"}}),
               "local rank 2 (KUMI_LOCAL_RANK) is not below the local size 2 (KUMI_LOCAL_SIZE)");
}

TEST(Launch, ExplicitValuesAreCheckedToo) {
  EXPECT_PRED2(contains, errorOf({{"KUMI_RANK", "4"}, {"KUMI_WORLD_SIZE", "4"}}),
      "rank 4 (KUMI_RANK) is not below the world size 4 (KUMI_WORLD_SIZE)");
  EXPECT_PRED2(contains, errorOf({{"KUMI_RANK", "0"}}), "no world size");
  EXPECT_PRED2(contains, errorOf({{"KUMI_RANK", "0"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_STORE", "nohost"}}),
      "KUMI_STORE='nohost'");
  EXPECT_PRED2(contains, errorOf({{"KUMI_RANK", "0"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_STORE", "h:99999"}}),
      "KUMI_STORE port");
  EXPECT_PRED2(contains, errorOf({{"JOB_COMPLETION_INDEX", "0"}, {"KUMI_WORLD_SIZE", "2"}, {"KUMI_PORT", "x"}}, "j-0",
                      {{"/etc/hosts", "1.2.3.4 j-0.s.ns.svc j-0\n"}}), "KUMI_PORT='x' is not an integer");
}

TEST(Launch, MalformedValuesNameTheVariable) {
  auto with = [](const char* var, const char* value) {
    Environment env = torchrunEnv();
    env[var] = value;
    return errorOf(env);
  };
  EXPECT_PRED2(contains, with("RANK", "five"), "RANK='five' is not an integer");
  EXPECT_PRED2(contains, with("RANK", " 5"), "RANK=' 5' is not an integer");
  EXPECT_PRED2(contains, with("LOCAL_RANK", "-1"), "LOCAL_RANK=-1 is outside");
  EXPECT_PRED2(contains, with("WORLD_SIZE", "0"), "WORLD_SIZE=0 is outside");
  EXPECT_PRED2(contains, with("MASTER_PORT", "65535"), "MASTER_PORT=65535 is outside");  // +1 would not fit
  EXPECT_PRED2(contains, with("WORLD_SIZE", "5"), "rank 5 (RANK) is not below the world size 5 (WORLD_SIZE)");
  EXPECT_PRED2(contains, with("LOCAL_RANK", "4"), "local rank 4 (LOCAL_RANK) is not below the local size 4");
  EXPECT_PRED2(contains, with("TORCHELASTIC_RESTART_COUNT", "1x"), "TORCHELASTIC_RESTART_COUNT");
  EXPECT_PRED2(contains, errorOf({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_NODEID", "3"},
                       {"SLURM_STEP_TASKS_PER_NODE", "1(x2)"}}),
                           "SLURM_NODEID=3 but SLURM_STEP_TASKS_PER_NODE='1(x2)' covers 2 nodes");
}

TEST(Launch, TwoLaunchersDisagreeingOnRankOrWorldSize) {
  // Open MPI and Slurm each claiming to have started this process, with other ranks.
  Environment env{{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                  {"SLURM_PROCID", "1"},         {"SLURM_NTASKS", "4"}};
  std::string e = errorOf(env);
  EXPECT_PRED2(contains, e, "launchers disagree");
  EXPECT_PRED2(contains, e, "OMPI_COMM_WORLD_RANK");
  EXPECT_PRED2(contains, e, "SLURM_PROCID");
  // World sizes that differ: stale torchrun variables in a Slurm step.
  Environment stale = torchrunEnv();
  stale.insert({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}});
  EXPECT_PRED2(contains, errorOf(stale), "SLURM_NTASKS");
  // A PyTorchJob pod count that is not torchrun's node count.
  Environment pod = torchrunEnv();
  pod.insert({{"PET_MASTER_ADDR", "m-master-0"}, {"PET_NODE_RANK", "1"}, {"PET_NNODES", "3"}});
  EXPECT_PRED2(contains, errorOf(pod), "PET_NNODES");
  // PyTorchJob's own RANK against its PET_NODE_RANK.
  EXPECT_PRED2(contains, errorOf({{"MASTER_ADDR", "m"}, {"PET_MASTER_ADDR", "m"}, {"RANK", "1"}, {"WORLD_SIZE", "2"},
                       {"PET_NODE_RANK", "0"}, {"PET_NNODES", "2"}}), "RANK=1 but PET_NODE_RANK=0");
  // Two pod controllers with different indexes.
  EXPECT_PRED2(contains, errorOf({{"LWS_WORKER_INDEX", "1"}, {"LWS_GROUP_SIZE", "2"}, {"LWS_LEADER_ADDRESS", "l"},
                       {"VC_TASK_INDEX", "0"}}), "launchers disagree");
}

TEST(Launch, ReportsNameEverySource) {
  LaunchInfo info = detectWith(torchrunEnv());
  std::string text = formatText(info);
  EXPECT_PRED2(contains, text, "launcher: torchrun\n");
  EXPECT_PRED2(contains, text, "coordinator_port  29501  (MASTER_PORT+1)");
  std::string json = formatJson(info);
  EXPECT_PRED2(contains, json, "\"launcher\": \"torchrun\"");
  EXPECT_PRED2(contains, json, "\"rank\": {\"value\": 5, \"source\": \"RANK\"}");
  EXPECT_PRED2(contains, formatJson(detectWith({})), "\"rank\": null");
}

}  // namespace
}  // namespace kumi::launch
