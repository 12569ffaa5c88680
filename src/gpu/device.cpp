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
  Registry& reg = Registry::instance();
  // Made outside the registry's lock: asking CUDA goes through the registry too.
  std::shared_ptr<Installed> made;
  if (!reg.hosts(kKey)) {
    made = std::make_shared<Installed>();
    made->device = makeCudaDevice(&made->why);
  }
  const auto found = reg.service<Installed>(kKey, [&] { return made; });
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
