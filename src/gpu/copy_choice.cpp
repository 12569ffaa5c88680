#include "gpu/copy_choice.hpp"

#include <algorithm>
#include <cmath>

#include "core/bytes.hpp"
#include "core/error.hpp"

namespace kumi::gpu {
namespace {
constexpr double kKernelMustSave = 0.95;  // of the engine's time

const char* nameOf(CopyMethod m) { return m == CopyMethod::Kernel ? "kernel" : "copy engine"; }
}  // namespace

CopyPolicy parseCopyPolicy(const std::string& text) {
  if (text == "auto") return CopyPolicy::Auto;
  if (text == "engine") return CopyPolicy::Engine;
  if (text == "kernel") return CopyPolicy::Kernel;
  fail(kumiInvalidArgument, "KUMI_CUDA_COPY must be auto, engine or kernel, got '", text, "'");
}

std::vector<std::size_t> copyCalibrationSizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t b = 4u << 10; b <= (16u << 20); b *= 4) sizes.push_back(b);
  return sizes;
}

CopyChoice CopyChoice::fixed(CopyMethod method) {
  CopyChoice c;
  c.fixed_ = method;
  return c;
}

CopyChoice CopyChoice::fromTimings(std::vector<CopyTiming> timings) {
  KUMI_REQUIRE_ARG(!timings.empty(), "no copy timings to choose from");
  std::sort(timings.begin(), timings.end(), [](const CopyTiming& a, const CopyTiming& b) { return a.bytes < b.bytes; });
  CopyChoice c;
  for (const CopyTiming& t : timings) {
    KUMI_REQUIRE_ARG(std::isfinite(t.engineUs) && std::isfinite(t.kernelUs) && t.engineUs > 0 && t.kernelUs > 0,
                     "copy timings of ", formatBytes(t.bytes), " must be positive, got engine ", t.engineUs,
                     " us, kernel ", t.kernelUs, " us");
    KUMI_REQUIRE_ARG(c.bySize_.empty() || c.bySize_.back().first != t.bytes, "two copy timings of ", formatBytes(t.bytes));
    c.bySize_.emplace_back(t.bytes, t.kernelUs <= kKernelMustSave * t.engineUs ? CopyMethod::Kernel : CopyMethod::Engine);
  }
  return c;
}

CopyMethod CopyChoice::forBytes(std::size_t bytes) const {
  if (bySize_.empty()) return fixed_;
  auto it = std::upper_bound(bySize_.begin(), bySize_.end(), bytes,
                             [](std::size_t b, const std::pair<std::size_t, CopyMethod>& e) { return b < e.first; });
  return it == bySize_.begin() ? it->second : std::prev(it)->second;
}

std::string CopyChoice::describe() const {
  std::vector<std::pair<std::size_t, CopyMethod>> runs;  // where each run of one method starts
  for (const auto& e : bySize_)
    if (runs.empty() || runs.back().second != e.second) runs.push_back(e);
  if (runs.size() <= 1) return std::string(nameOf(runs.empty() ? fixed_ : runs.front().second)) + " at every size";
  std::string out = std::string(nameOf(runs[0].second)) + " below " + formatBytes(runs[1].first);
  for (std::size_t k = 1; k < runs.size(); ++k) out += cat(", ", nameOf(runs[k].second), " from ", formatBytes(runs[k].first));
  return out;
}

}  // namespace kumi::gpu
