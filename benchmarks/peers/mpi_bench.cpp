// kumi-bench-mpi: MPI_Allreduce (MPI_FLOAT, MPI_SUM), measured exactly like
// kumi-bench (see bench_common.h). Launched with mpirun; benchmarks/compare.py
// pins Open MPI to TCP over loopback so it runs on the same transport as
// kumi and Gloo.
#include <mpi.h>

#include <cstdint>
#include <cstdio>

#include "bench_common.h"

namespace {

constexpr const char* kTool = "kumi-bench-mpi";

class MpiComm {
 public:
  MpiComm() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  void barrier() { MPI_Barrier(MPI_COMM_WORLD); }

  void prepare(float* send, float* recv, std::size_t count) {
    send_ = send;
    recv_ = recv;
    count_ = static_cast<int>(count);  // range checked in main()
  }

  void allreduce() {
    MPI_Allreduce(send_, recv_, count_, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }

  double max_over_ranks(double v) {
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return v;
  }
  std::uint64_t sum_over_ranks(std::uint64_t v) {
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    return v;
  }

 private:
  int rank_ = 0;
  int size_ = 1;
  float* send_ = nullptr;
  float* recv_ = nullptr;
  int count_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // Parsed before MPI_Init so that usage errors exit cleanly, without an
  // MPI job left half-initialised (Open MPI leaves argv untouched).
  const auto opt = kumi_peer::parse_args(argc, argv, kTool, /*gloo=*/false);
  // MPI counts are int; 8 GiB of floats is far beyond what we benchmark.
  if (opt.max_bytes / sizeof(float) > static_cast<std::size_t>(INT32_MAX)) {
    std::fprintf(stderr, "%s: -e too large for an MPI int count\n", kTool);
    return 2;
  }
  MPI_Init(&argc, &argv);
  MpiComm comm;
  const int rc = kumi_peer::run_allreduce_bench(comm, opt, kTool, "mpi");
  MPI_Finalize();
  return rc;
}
