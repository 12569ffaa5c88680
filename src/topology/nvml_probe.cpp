#include "topology/nvml_probe.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.hpp"

namespace kumi::topo {
namespace {

// The few NVML types used here, as nvml.h defines them (a stable C ABI): kumi builds without
// the NVML headers.
using NvmlDevice = struct NvmlDeviceOpaque*;
using NvmlReturn = int;  // 0: NVML_SUCCESS
constexpr NvmlReturn kNvmlSuccess = 0;
struct NvmlPciInfo {
  char busIdLegacy[16];
  unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};
constexpr int kRemoteSwitch = 2;     // nvmlIntNvLinkDeviceType_t: 0 GPU, 1 IBM NPU, 2 switch
constexpr unsigned kMaxLinks = 64;   // NVML_NVLINK_MAX_LINKS is 18 today; the loop stops at NVML's "invalid link"

struct Library {
  void* handle = nullptr;
  ~Library() {
    if (handle) dlclose(handle);
  }
  template <class F>
  F sym(const char* name) const {
    return reinterpret_cast<F>(dlsym(handle, name));
  }
};

}  // namespace

std::optional<NvLinkMatrix> probeNvLinks(const Machine& m, std::string* why) {
  auto say = [&](std::string s) {
    if (why) *why = std::move(s);
    return std::nullopt;
  };
  if (m.gpus.empty()) return say("no GPUs");
  Library lib;
  lib.handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib.handle) return say(cat("NVML not found (", dlerror(), ")"));
  auto init = lib.sym<NvmlReturn (*)()>("nvmlInit_v2");
  auto shutdown = lib.sym<NvmlReturn (*)()>("nvmlShutdown");
  auto byBusId = lib.sym<NvmlReturn (*)(const char*, NvmlDevice*)>("nvmlDeviceGetHandleByPciBusId_v2");
  auto state = lib.sym<NvmlReturn (*)(NvmlDevice, unsigned, int*)>("nvmlDeviceGetNvLinkState");
  auto version = lib.sym<NvmlReturn (*)(NvmlDevice, unsigned, unsigned*)>("nvmlDeviceGetNvLinkVersion");
  auto remote = lib.sym<NvmlReturn (*)(NvmlDevice, unsigned, NvmlPciInfo*)>("nvmlDeviceGetNvLinkRemotePciInfo_v2");
  auto remoteType = lib.sym<NvmlReturn (*)(NvmlDevice, unsigned, int*)>("nvmlDeviceGetNvLinkRemoteDeviceType");
  if (!init || !shutdown || !byBusId || !state || !version || !remote)
    return say("this NVML lacks the NVLink queries");
  if (init() != kNvmlSuccess) return say("nvmlInit failed (no NVIDIA driver loaded?)");
  struct Shutdown {
    NvmlReturn (*f)();
    ~Shutdown() { f(); }
  } done{shutdown};

  NvLinkMatrix out;
  out.source = "NVML";
  for (const Gpu& g : m.gpus) out.ends.push_back({g.busId, false});
  struct Seen {
    std::size_t from, to;
    std::uint64_t mbps;
  };
  std::vector<Seen> links;
  for (std::size_t g = 0; g < m.gpus.size(); ++g) {
    NvmlDevice dev = nullptr;
    if (m.gpus[g].busId.empty() || byBusId(m.gpus[g].busId.c_str(), &dev) != kNvmlSuccess) continue;
    for (unsigned l = 0; l < kMaxLinks; ++l) {
      int active = 0;
      if (state(dev, l, &active) != kNvmlSuccess) break;  // past the last link
      unsigned v = 0;
      NvmlPciInfo pci{};
      if (active != 1 || version(dev, l, &v) != kNvmlSuccess || remote(dev, l, &pci) != kNvmlSuccess) continue;
      const std::string peer = canonicalBusId(pci.busId);
      if (peer.empty() || nvlinkLaneMBps(v) == 0) continue;
      auto it = std::find_if(out.ends.begin(), out.ends.end(), [&](const NvLinkEnd& e) { return e.busId == peer; });
      if (it == out.ends.end()) {
        int type = -1;
        const bool known = remoteType && remoteType(dev, l, &type) == kNvmlSuccess;
        out.ends.push_back({peer, !known || type == kRemoteSwitch});
        it = std::prev(out.ends.end());
      }
      links.push_back({g, static_cast<std::size_t>(it - out.ends.begin()), nvlinkLaneMBps(v)});
    }
  }
  const std::size_t e = out.ends.size();
  out.mbps.assign(e * e, 0);
  out.lanes.assign(e * e, 0);
  for (const Seen& s : links) {
    // A GPU-GPU link is reported from both sides; count it from the lower index only.
    if (s.to < m.gpus.size() && s.to < s.from) continue;
    for (auto [a, b] : {std::pair{s.from, s.to}, std::pair{s.to, s.from}}) {
      out.mbps[a * e + b] += s.mbps;
      out.lanes[a * e + b] += 1;
    }
  }
  if (links.empty()) return say("NVML reports no active NVLink");
  return out;
}

}  // namespace kumi::topo
