// Setting the CPU affinity of the whole process, not only of the calling thread: the communicator
// is often created after the program (or Python, or a data loader) has started threads.
#pragma once

#include "topology/cpu_list.hpp"

namespace kumi::topo {

// Binds every thread of this process to `cpus`; threads created later inherit it. Throws
// kumiInvalidArgument for an empty list and kumiSystemError when the kernel refuses (for
// example CPUs outside the container's cpuset).
void bindThisProcess(const CpuList& cpus);

// The calling thread's current affinity.
CpuList currentAffinity();

}  // namespace kumi::topo
