// A device-to-device copy by a kernel, the alternative to the copy engine that gpu/copy_choice.hpp
// picks per size. Both pointers are device memory of this GPU or a peer's mapped here (CUDA IPC,
// peer access); launched on the stream without waiting, launch errors thrown as kumi::Error.
// The stream is a cudaStream_t passed as void* so that this header stays free of CUDA's.
#pragma once

#include <cstddef>

namespace kumi::gpu {

void copyOnDevice(void* dst, const void* src, std::size_t bytes, void* stream);

}  // namespace kumi::gpu
