// The launcher tables, one factory per launcher, grouped by family in launchers_*.cpp. Each
// documents where its variables and their meaning come from.
#pragma once

#include <optional>
#include <string>

#include "launch/launcher_table.hpp"

namespace kumi::launch {

// Explicit KUMI_* (and kumirun, which sets them): applied over whatever was detected.
Launcher explicitKumi();

// Per process, innermost first: a torchrun under Slurm, an mpirun inside a pod.
Launcher torchrun();
Launcher openMpi();
Launcher slurm();

// Per pod (Kubernetes).
Launcher kubeflowTrainer();
Launcher kubeflowPyTorchJob();
Launcher volcano();
Launcher jobSet();
Launcher leaderWorkerSet();
Launcher indexedJob();

// The pod's DNS suffix after its hostname (".sub.ns.svc.cluster.local"), read from /etc/hosts,
// where the kubelet writes "IP host.sub.ns.svc.cluster.local host" when the pod has a subdomain.
std::optional<std::string> podDnsSuffix(const Context& ctx);

}  // namespace kumi::launch
