// kumi-bench-gloo: Gloo ring allreduce over Gloo's TCP transport on
// loopback, measured exactly like kumi-bench (see bench_common.h).
//
// Launched by kumirun (`kumirun -np N -- kumi-bench-gloo ...`), which sets
// KUMI_RANK and KUMI_WORLD_SIZE; ranks find each other through a Gloo
// FileStore in --store-dir.
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "bench_common.h"

namespace {

constexpr const char* kTool = "kumi-bench-gloo";

// Distinct tags keep the timed allreduce's messages apart from the
// bookkeeping collectives, which run on the same pairs.
constexpr uint32_t kTagBench = 1;
constexpr uint32_t kTagControl = 2;
constexpr uint32_t kTagBarrier = 3;

// Generous: the largest messages on a loaded 2-core box can take seconds.
constexpr std::chrono::seconds kTimeout{300};

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string(name) +
                             " is not set (launch with kumirun)");
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1 << 20)
    throw std::runtime_error(std::string(name) + "='" + v + "' is invalid");
  return static_cast<int>(x);
}

class GlooComm {
 public:
  GlooComm(int rank, int size, const kumi_peer::Options& opt) {
    // FileStore resolves the directory with realpath(), so it must exist.
    std::filesystem::create_directories(opt.store_dir);
    gloo::rendezvous::FileStore file_store(opt.store_dir);
    gloo::rendezvous::PrefixStore store(opt.store_prefix, file_store);

    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";  // loopback only, like the other benchmarks
    auto device = gloo::transport::tcp::CreateDevice(attr);

    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->setTimeout(kTimeout);
    ctx->connectFullMesh(store, device);
    ctx_ = ctx;
  }

  int rank() const { return ctx_->rank; }
  int size() const { return ctx_->size; }

  void barrier() {
    gloo::BarrierOptions opts(ctx_);
    opts.setTag(kTagBarrier);
    gloo::barrier(opts);
  }

  // The options object owns the registered (unbound) buffers, so it is built
  // once per size and reused; only the collective itself is timed.
  void prepare(float* send, float* recv, std::size_t count) {
    bench_.emplace(ctx_);
    bench_->setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    bench_->setInput(send, count);
    bench_->setOutput(recv, count);
    bench_->setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(
            &gloo::sum<float>));
    bench_->setTag(kTagBench);
  }

  void allreduce() { gloo::allreduce(*bench_); }

  double max_over_ranks(double v) {
    return reduce_scalar(v, &gloo::max<double>);
  }
  uint64_t sum_over_ranks(uint64_t v) {
    return reduce_scalar(v, &gloo::sum<uint64_t>);
  }

 private:
  template <class T>
  T reduce_scalar(T v, void (*fn)(void*, const void*, const void*, size_t)) {
    gloo::AllreduceOptions opts(ctx_);
    opts.setOutput(&v, 1);  // in place: output doubles as input
    opts.setReduceFunction(fn);
    opts.setTag(kTagControl);
    gloo::allreduce(opts);
    return v;
  }

  std::shared_ptr<gloo::Context> ctx_;
  std::optional<gloo::AllreduceOptions> bench_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto opt = kumi_peer::parse_args(argc, argv, kTool, /*gloo=*/true);
  int rank = -1;
  try {
    rank = env_int("KUMI_RANK");
    const int size = env_int("KUMI_WORLD_SIZE");
    if (size < 1 || rank >= size)
      throw std::runtime_error("KUMI_RANK must be < KUMI_WORLD_SIZE");
    GlooComm comm(rank, size, opt);
    return kumi_peer::run_allreduce_bench(comm, opt, kTool, "gloo");
  } catch (const std::exception& e) {
    // Gloo reports transport and rendezvous failures as exceptions.
    std::fprintf(stderr, "%s[rank %d]: %s\n", kTool, rank, e.what());
    if (std::strstr(e.what(), "File already exists"))
      std::fprintf(stderr, "%s: --store-dir holds keys of an earlier run; "
                   "use a fresh directory\n", kTool);
    return 1;
  }
}
