#include "gpu/device.hpp"

#include "core/registry.hpp"
#include "gpu/cuda_device.hpp"

namespace kumi::gpu {
namespace {
constexpr const char* kKey = "gpu-device";

struct Installed {
  std::shared_ptr<Device> device;  // null: none
  std::string why;
};
}  // namespace

Device* device(std::string* why) {
  const auto found = Registry::instance().service<Installed>(kKey, [] {
    auto made = std::make_shared<Installed>();
    made->device = makeCudaDevice(&made->why);
    return made;
  });
  if (!found->device && why) *why = found->why;
  return found->device.get();
}

void installDevice(std::shared_ptr<Device> d) {
  auto made = std::make_shared<Installed>();
  made->device = std::move(d);
  made->why = "no device installed";
  Registry::instance().install(kKey, made);
}

}  // namespace kumi::gpu
