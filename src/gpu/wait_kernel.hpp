// The fallback for holding a caller's stream on a host-written counter where the driver offers
// no cuStreamWaitValue32: one thread that polls the (mapped, pinned) counter and sleeps between
// looks. It occupies a sliver of one multiprocessor while it waits.
#pragma once

#include <cstdint>

namespace kumi::gpu {

// Later work on stream waits until (int32)(*counter - target) >= 0; counter is a device address
// of mapped pinned host memory.
void launchWaitKernel(const void* counter, std::uint32_t target, void* stream);

}  // namespace kumi::gpu
