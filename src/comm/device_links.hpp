// What a host's GPUs mean for planning calls on device buffers: the device section of the link
// model (collectives/link_model.hpp) from the machine model's GPU links (NVLink, NVSwitch, PCIe;
// src/topology/gpu_fabric.hpp). Kept apart from the planner so that fixtures of machines this
// project does not have (an HGX board, NVLink-bridged pairs) test the figures and the choices.
#pragma once

#include "collectives/link_model.hpp"
#include "topology/machine.hpp"

namespace kumi {

// Share of a link's rate that a copy or reduction reading the peer's memory is taken to reach.
// Assumed, not measured: no multi-GPU machine has been lent (docs/PLANNER.md).
inline constexpr double kDeviceLinkEfficiency = 0.8;

// Sets each device figure of `m` that still has its default from `host` (a tuning file's own
// figures win): the narrowest link between two of its GPUs (a ring over them is as fast as that),
// or with one GPU the GPU's own copy rate (processes sharing it read each other's memory there);
// staging at the narrowest GPU's PCIe link; the GPU count, beyond which ranks share GPUs.
// A host without GPUs leaves `m` as it is.
void putDeviceLinks(const topo::Machine& host, LinkModel& m);

}  // namespace kumi
