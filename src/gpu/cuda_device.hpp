// The CUDA implementation of gpu::Device, made only when a GPU can be used (built without CUDA:
// never). Separate from device.cpp so that the registry lookup compiles without CUDA headers.
#pragma once

#include <memory>
#include <string>

#include "gpu/device.hpp"

namespace kumi::gpu {

// Null, with why filled, when no GPU can be used (no driver, no device, built without CUDA).
std::shared_ptr<Device> makeCudaDevice(std::string* why);

}  // namespace kumi::gpu
