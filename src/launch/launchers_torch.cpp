// torchrun and the Kubeflow operators that start it. Under torchrun, MASTER_ADDR:MASTER_PORT is
// torch's own store (the agent's TCPStore), so kumi's coordinator port is MASTER_PORT+1.
#include "core/error.hpp"
#include "launch/launchers.hpp"

namespace kumi::launch {

namespace {

bool underTorchrun(const Context& c) { return c.has("TORCHELASTIC_RUN_ID") || c.has("LOCAL_RANK"); }

}  // namespace

// torchrun (torch.distributed.run): the elastic agent's _start_workers sets, per worker,
// LOCAL_RANK, RANK, GROUP_RANK (the agent's node index), ROLE_RANK, ROLE_NAME, LOCAL_WORLD_SIZE,
// WORLD_SIZE, GROUP_WORLD_SIZE (agents), ROLE_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_RUN_ID,
// TORCHELASTIC_USE_AGENT_STORE (torch/distributed/elastic/agent/server/local_elastic_agent.py).
// The legacy torch.distributed.launch --use-env sets RANK, WORLD_SIZE, LOCAL_RANK only.
Launcher torchrun() {
  return Launcher{
      "torchrun", Scope::Process,
      [](const Context& c) { return underTorchrun(c) && c.has("RANK"); },
      {{"RANK", Field::Rank, Parse::Index},
       {"WORLD_SIZE", Field::WorldSize, Parse::Count},
       {"LOCAL_RANK", Field::LocalRank, Parse::Index},
       {"LOCAL_WORLD_SIZE", Field::LocalSize, Parse::Count},
       {"GROUP_RANK", Field::NodeRank, Parse::Index},
       {"GROUP_WORLD_SIZE", Field::NodeCount, Parse::Count},
       {"MASTER_ADDR", Field::Host, Parse::Text},
       {"MASTER_PORT", Field::Port, Parse::PortPlusOne},
       {"TORCHELASTIC_RUN_ID", Field::JobId, Parse::Text},
       {"TORCHELASTIC_RESTART_COUNT", Field::Generation, Parse::Index}},
      {}};
}

// Kubeflow Trainer v2 (TrainJob on the torch-distributed runtime): a JobSet whose "node" pods
// get PET_NNODES, PET_NPROC_PER_NODE, PET_MASTER_ADDR (<trainjob>-node-0-0.<trainjob>),
// PET_MASTER_PORT (29400, torchrun's rendezvous port) and PET_NODE_RANK from the downward API
// (metadata.annotations['batch.kubernetes.io/job-completion-index']): PET_NODE_RANK together
// with JOB_COMPLETION_INDEX tells it from the v1 PyTorchJob. torchrun reads PET_* as its options.
Launcher kubeflowTrainer() {
  return Launcher{
      "kubeflow-trainer", Scope::Pod,
      [](const Context& c) { return c.has("PET_NODE_RANK") && c.has("JOB_COMPLETION_INDEX"); },
      {{"PET_NODE_RANK", Field::NodeRank, Parse::Index},
       {"PET_NNODES", Field::NodeCount, Parse::CountOrWord},
       {"PET_NPROC_PER_NODE", Field::LocalSize, Parse::CountOrWord},
       {"PET_MASTER_ADDR", Field::Host, Parse::Text},
       {"PET_MASTER_PORT", Field::Port, Parse::PortPlusOne}},
      {}};
}

// Kubeflow PyTorchJob (training-operator v1, pkg/controller.v1/pytorch/envvar.go): every pod gets
// MASTER_ADDR (<job>-master-0), MASTER_PORT, WORLD_SIZE, RANK (the pod's index: master 0, worker
// i -> i+1), PYTHONUNBUFFERED, and since v1.7 PET_MASTER_ADDR, PET_MASTER_PORT, PET_NNODES,
// PET_NODE_RANK and PET_NPROC_PER_NODE ("auto" or a number). So RANK is the node rank: a rank
// only when one process runs per pod. When torchrun runs inside, it overwrites RANK and
// WORLD_SIZE, and only PET_NODE_RANK/PET_NNODES still describe the pod. Volcano's pytorch plugin
// sets the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK, with the same meaning.
Launcher kubeflowPyTorchJob() {
  return Launcher{
      "kubeflow-pytorchjob", Scope::Pod,
      [](const Context& c) {
        if (c.has("JOB_COMPLETION_INDEX")) return false;  // an Indexed Job pod: Trainer v2, JobSet
        return c.has("PET_MASTER_ADDR") ||
               (c.has("MASTER_ADDR") && c.has("RANK") && c.has("WORLD_SIZE") && !underTorchrun(c));
      },
      {{"PET_NODE_RANK", Field::NodeRank, Parse::Index},
       {"PET_NNODES", Field::NodeCount, Parse::CountOrWord},
       {"PET_NPROC_PER_NODE", Field::LocalSize, Parse::CountOrWord},
       {"PET_MASTER_ADDR", Field::Host, Parse::Text},
       {"MASTER_ADDR", Field::Host, Parse::Text},
       {"PET_MASTER_PORT", Field::Port, Parse::PortPlusOne},
       {"MASTER_PORT", Field::Port, Parse::PortPlusOne}},
      [](const Context& c, LaunchInfo& info) {
        // Pods "<job>-master-0" and "<job>-worker-<i>" (node i+1).
        for (const char* role : {"-master-0", "-worker-"}) {
          const auto at = c.hostname().rfind(role);
          if (at == std::string::npos || at == 0) continue;
          info.nodeHost = [job = c.hostname().substr(0, at)](long long n) {
            return n == 0 ? job + "-master-0" : cat(job, "-worker-", n - 1);
          };
          info.nodeHostSource = "hostname <job>-master-0 / <job>-worker-<i>";
          break;
        }
        if (underTorchrun(c)) return;  // RANK and WORLD_SIZE are torchrun's now
        LaunchInfo pod;
        applyRows(c, {{"RANK", Field::NodeRank, Parse::Index}, {"WORLD_SIZE", Field::NodeCount, Parse::Count}}, pod);
        if (pod.nodeRank && info.nodeRank && *pod.nodeRank != *info.nodeRank)
          fail(kumiInvalidArgument, "PyTorchJob variables disagree: RANK=", *pod.nodeRank, " but PET_NODE_RANK=",
               *info.nodeRank, " (the operator sets both to the pod's index)");
        if (!info.nodeRank && pod.nodeRank) info.nodeRank = pod.nodeRank;
        // WORLD_SIZE counts pods x PET_NPROC_PER_NODE (v1.7+), so it is the pod count only with
        // one process per pod; PET_NNODES, when a number, is the pod count itself.
        bool onePerPod = !info.localSize || *info.localSize == 1;
        if (!info.nodeCount && pod.nodeCount && onePerPod) info.nodeCount = pod.nodeCount;
      }};
}

}  // namespace kumi::launch
