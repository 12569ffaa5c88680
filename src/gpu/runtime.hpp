// The CUDA runtime as kumi uses it. Built with CUDA, the runtime is linked statically and finds
// the driver (libcuda.so.1) only when first asked, so the library loads and runs on machines with
// no GPU and no driver; built without CUDA, the same calls answer "no GPU". Nothing outside
// src/gpu includes CUDA headers.
#pragma once

#include <cstddef>
#include <string>

#include "gpu/memory_kind.hpp"

namespace kumi::gpu {

// Whether kumi was built with CUDA.
bool built();
// Whether a CUDA device can be used now; if not, why (no driver, no device, built without CUDA).
// Asked once per process; later calls return the first answer.
bool available(std::string* why);
// The kind of memory p points to; Host when no device is available.
MemoryKind memoryKindOf(const void* p);
// Multiprocessors of the current device (for launch configuration).
int multiprocessors();

}  // namespace kumi::gpu
