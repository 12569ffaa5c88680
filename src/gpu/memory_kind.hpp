// What kind of memory a user buffer is, and which combinations a collective takes. The mapping
// from CUDA's pointer attributes and the policy are pure code (tested without a GPU); asking CUDA
// about a pointer is gpu/runtime.hpp's job.
#pragma once

#include <string>

namespace kumi::gpu {

enum class MemoryKind {
  Host,        // ordinary memory, or any pointer when no CUDA device is present
  PinnedHost,  // cudaMallocHost / cudaHostRegister: host memory the GPU can reach
  Device,      // cudaMalloc: on a GPU
  Managed,     // cudaMallocManaged: migrates between host and GPU
};

const char* memoryKindName(MemoryKind k);

// From cudaPointerAttributes::type (cudaMemoryTypeUnregistered 0, Host 1, Device 2, Managed 3).
// Values CUDA may add later are refused by the caller as unknown: returns false.
bool memoryKindFromCuda(int cudaMemoryType, MemoryKind* kind);

// Where a buffer pair must be handled: on the GPU (device buffers, with the caller's stream) or
// by the CPU path. Throws kumiInvalidArgument naming the buffers and the reason for what is not
// supported: managed memory (its pages move under us; NCCL refuses it on most platforms too),
// and a device buffer paired with a host one on the same rank (one rank's buffers must be of one
// kind; ranks may differ from each other).
enum class Path { Cpu, Gpu };
Path pathFor(const char* what, MemoryKind send, MemoryKind recv);

}  // namespace kumi::gpu
