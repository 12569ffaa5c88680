// Google Benchmark micro-benchmarks of the CUDA reduction kernels, beside the yardstick they are
// judged by: the device's own device-to-device copy bandwidth, measured in the same run. Bytes
// count what each moves through memory: a copy reads and writes each byte (2x), a reduction reads
// two inputs and writes one (3x). Timed with CUDA events around each batch (manual time).
//   build/kumi-gpu-micro-bench --benchmark_filter=float32
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "core/types.hpp"
#include "gpu/copy_kernel.hpp"
#include "gpu/reduce_device.hpp"
#include "gpu/runtime.hpp"

namespace {

struct Device {
  void* a = nullptr;
  void* b = nullptr;
  void* d = nullptr;
  cudaEvent_t start{}, stop{};
  explicit Device(std::size_t bytes) {
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMalloc(&d, bytes) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
    cudaMemset(a, 0, bytes);
    cudaMemset(b, 0, bytes);
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~Device() {
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  // Seconds of one call of f, timed on the GPU.
  template <class F>
  double time(F f) {
    cudaEventRecord(start);
    f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    return ms / 1e3;
  }
};

void BM_CopyD2D(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  Device dev(bytes);
  for (auto _ : state) state.SetIterationTime(dev.time([&] { cudaMemcpyAsync(dev.d, dev.a, bytes, cudaMemcpyDeviceToDevice); }));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(2 * bytes));
}

// The same copy by kumi's kernel (gpu/copy_kernel.hpp), which queues choose per size where it
// measured faster than the engine (gpu/copy_choice.hpp).
void BM_CopyKernel(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  Device dev(bytes);
  for (auto _ : state) state.SetIterationTime(dev.time([&] { kumi::gpu::copyOnDevice(dev.d, dev.a, bytes, nullptr); }));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(2 * bytes));
}

void BM_Reduce(benchmark::State& state, kumiDataType_t type, kumiRedOp_t op) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t n = bytes / kumi::typeSize(type);
  Device dev(bytes);
  for (auto _ : state)
    state.SetIterationTime(dev.time([&] { kumi::gpu::reduceOnDevice(type, op, dev.d, dev.a, dev.b, n, nullptr); }));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(3 * bytes));
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!kumi::gpu::available(&why)) {
    std::fprintf(stderr, "kumi-gpu-micro-bench: no GPU to measure: %s\n", why.c_str());
    return 77;  // "skipped", as automake and the device check script read it
  }
  for (std::int64_t s : {std::int64_t{64} << 10, std::int64_t{1} << 20}) {  // where a kernel may start sooner
    benchmark::RegisterBenchmark("copy_d2d", BM_CopyD2D)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("copy_kernel", BM_CopyKernel)->Arg(s)->UseManualTime();
  }
  const std::int64_t sizes[] = {1 << 20, 64 << 20, std::int64_t{1} << 30};
  for (std::int64_t s : sizes) {
    if (s > (1 << 20)) benchmark::RegisterBenchmark("copy_d2d", BM_CopyD2D)->Arg(s)->UseManualTime();
    if (s > (1 << 20)) benchmark::RegisterBenchmark("copy_kernel", BM_CopyKernel)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("reduce/float32/sum", BM_Reduce, kumiFloat32, kumiSum)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("reduce/bfloat16/sum", BM_Reduce, kumiBfloat16, kumiSum)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("reduce/float16/sum", BM_Reduce, kumiFloat16, kumiSum)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("reduce/float64/max", BM_Reduce, kumiFloat64, kumiMax)->Arg(s)->UseManualTime();
    benchmark::RegisterBenchmark("reduce/int32/prod", BM_Reduce, kumiInt32, kumiProd)->Arg(s)->UseManualTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
