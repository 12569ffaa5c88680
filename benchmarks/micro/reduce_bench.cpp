// Google Benchmark micro-benchmarks of the CPU reduction kernels: bytes reduced per second for
// each type, on the target the dispatcher picks and on every other compiled target; and memcpy.
//   build/kumi-micro-bench --benchmark_filter=float32
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/reduce.hpp"
#include "core/types.hpp"

namespace {

void BM_Reduce(benchmark::State& state, kumiDataType_t type, kumiRedOp_t op, std::int64_t target) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const std::size_t bytes = n * kumi::typeSize(type);
  std::vector<std::byte> a(bytes, std::byte{1}), b(bytes, std::byte{2}), dst(bytes);
  kumi::forceReduceTarget(target);
  for (auto _ : state) {
    kumi::reduceBuffers(type, op, dst.data(), a.data(), b.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  kumi::forceReduceTarget(0);
  // Two inputs read and one output written per element.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(3 * bytes));
  state.SetLabel(target ? kumi::reduceTargetName(target) : "dispatched: " + kumi::reduceTargetName());
}

// The machine's copy bandwidth, the yardstick for shared-memory collectives (compare.py
// --link shm reports kumi's busbw as a fraction of it). Bytes copied per second.
void BM_Memcpy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes, std::byte{0});
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_Memcpy)->Name("memcpy")->Arg(1 << 20)->Arg(64 << 20);

int registerAll() {
  const kumiDataType_t types[] = {kumiFloat32, kumiBfloat16, kumiFloat16, kumiFloat64, kumiInt32, kumiInt8};
  std::vector<std::int64_t> targets = {0};
  for (std::int64_t t : kumi::reduceTargetsAvailable()) targets.push_back(t);
  for (kumiDataType_t t : types)
    for (std::int64_t target : targets) {
      std::string name = std::string("reduce_sum/") + kumi::typeName(t) + "/" +
                         (target ? kumi::reduceTargetName(target) : std::string("auto"));
      benchmark::RegisterBenchmark(name.c_str(), BM_Reduce, t, kumiSum, target)->Arg(1 << 12)->Arg(1 << 16)->Arg(1 << 20);
    }
  return 0;
}
const int registered = registerAll();

}  // namespace

BENCHMARK_MAIN();
