// How a work queue copies device memory to device memory (its own GPU's, or a peer process's
// mapped over NVLink or PCIe): by the copy engine (cudaMemcpyAsync) or by a kernel of kumi's.
// Which is faster depends on the size and the part: a kernel starts sooner and spreads a copy
// over every multiprocessor, the engine needs no SMs (the reductions keep them) and often wins
// on large copies. So the CUDA device measures both once per GPU, at the first queue, and each
// copy takes the one measured faster at its size (KUMI_CUDA_COPY forces one). Pure: the timing
// is the CUDA side's (gpu/cuda_device.cpp), the decisions are tested here.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace kumi::gpu {

enum class CopyMethod { Engine, Kernel };
enum class CopyPolicy { Auto, Engine, Kernel };

// KUMI_CUDA_COPY: "auto" (measured), "engine" or "kernel"; anything else throws, naming it.
CopyPolicy parseCopyPolicy(const std::string& text);

// One measured size: the best of several runs of each method, in microseconds.
struct CopyTiming {
  std::size_t bytes = 0;
  double engineUs = 0;
  double kernelUs = 0;
};

// The sizes measured: 4 KiB to 16 MiB, by 4x. Beyond, both methods run at the memory's speed.
std::vector<std::size_t> copyCalibrationSizes();

class CopyChoice {
 public:
  CopyChoice() = default;  // the copy engine at every size
  static CopyChoice fixed(CopyMethod method);
  // The kernel at a measured size only where it took at most 95% of the engine's time: ties and
  // noise go to the engine, which leaves the multiprocessors to the reductions. Timings that are
  // not positive and finite are refused (a broken measurement must not pick a method).
  static CopyChoice fromTimings(std::vector<CopyTiming> timings);
  // For a copy of `bytes`: the method of the largest measured size not above it (below the
  // smallest, the smallest's).
  CopyMethod forBytes(std::size_t bytes) const;
  // For the log: "copy engine at every size", "kernel below 1 MiB, copy engine from 1 MiB", ...
  std::string describe() const;

 private:
  std::vector<std::pair<std::size_t, CopyMethod>> bySize_;  // ascending; empty: fixed_ everywhere
  CopyMethod fixed_ = CopyMethod::Engine;
};

}  // namespace kumi::gpu
