// Scenarios of bad input and failure, one per invocation, driven by tests/scripts: each prints
// what it observed as "RESULT <code> <message>" lines (or "OK ..." lines for self-checked cases)
// so that the driver can assert on codes, messages and timing for every rank.
#include <kumi/kumi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/scenario.hpp"

namespace {

using kumi::scenario::initOrDie;
using kumi::scenario::report;

int failures = 0;

// Expects failure with `code` and a message containing `needle`.
void expectFail(const char* what, kumiResult_t r, kumiResult_t code, const char* needle) {
  report(what, r);
  if (r != code || std::strstr(kumiGetLastError(), needle) == nullptr) {
    std::printf("MISMATCH %s: wanted code %d and \"%s\"\n", what, static_cast<int>(code), needle);
    ++failures;
  }
}

// Every rank makes the same local mistakes; each must be refused before any traffic, and the
// communicator must stay usable afterwards.
int localArgs() {
  kumiComm_t comm = initOrDie();
  int rank = 0, size = 1;
  kumiCommRank(comm, &rank);
  kumiCommSize(comm, &size);
  std::vector<float> a(64, 1.f), b(64, 0.f);
  expectFail("null-send", kumiAllReduce(nullptr, b.data(), 64, kumiFloat32, kumiSum, comm, nullptr), kumiInvalidArgument, "send buffer is NULL");
  expectFail("null-recv", kumiAllReduce(a.data(), nullptr, 64, kumiFloat32, kumiSum, comm, nullptr), kumiInvalidArgument, "receive buffer is NULL");
  expectFail("bad-type", kumiAllReduce(a.data(), b.data(), 64, static_cast<kumiDataType_t>(42), kumiSum, comm, nullptr), kumiInvalidArgument, "invalid data type 42");
  expectFail("bad-op", kumiAllReduce(a.data(), b.data(), 64, kumiFloat32, static_cast<kumiRedOp_t>(-3), comm, nullptr), kumiInvalidArgument, "invalid reduction op -3");
  expectFail("negative-count", kumiAllReduce(a.data(), b.data(), static_cast<size_t>(-1), kumiFloat32, kumiSum, comm, nullptr), kumiInvalidArgument, "too large");
  expectFail("overflow-count", kumiAllGather(a.data(), b.data(), (SIZE_MAX / 4) / static_cast<size_t>(size) + 1, kumiFloat32, comm, nullptr), kumiInvalidArgument, "too large");
  expectFail("bad-root", kumiBroadcast(a.data(), b.data(), 64, kumiFloat32, size + 6, comm, nullptr), kumiInvalidArgument, "is not a rank");
  expectFail("negative-root", kumiReduce(a.data(), b.data(), 64, kumiFloat32, kumiSum, -1, comm, nullptr), kumiInvalidArgument, "root -1");
  expectFail("peer-outside", kumiSend(a.data(), 64, kumiFloat32, size, comm, nullptr), kumiInvalidArgument, "is not a rank");
  expectFail("peer-self", kumiRecv(b.data(), 64, kumiFloat32, rank, comm, nullptr), kumiInvalidArgument, "itself");
  int dummy = 0;
  expectFail("overlap", kumiAllReduce(a.data(), a.data() + 1, 32, kumiFloat32, kumiSum, comm, nullptr), kumiInvalidArgument, "overlap");
  // All-to-all: both buffers hold size blocks; same checks, and no in-place form.
  const std::size_t blocks = static_cast<std::size_t>(size);
  std::vector<float> c(64 * blocks, 1.f), d(64 * blocks, 0.f);
  expectFail("alltoall-null-send", kumiAllToAll(nullptr, d.data(), 64, kumiFloat32, comm, nullptr), kumiInvalidArgument, "alltoall: send buffer is NULL");
  expectFail("alltoall-null-recv", kumiAllToAll(c.data(), nullptr, 64, kumiFloat32, comm, nullptr), kumiInvalidArgument, "alltoall: receive buffer is NULL");
  expectFail("alltoall-bad-type", kumiAllToAll(c.data(), d.data(), 64, static_cast<kumiDataType_t>(42), comm, nullptr), kumiInvalidArgument, "invalid data type 42");
  expectFail("alltoall-overflow-count", kumiAllToAll(c.data(), d.data(), (SIZE_MAX / 4) / blocks + 1, kumiFloat32, comm, nullptr), kumiInvalidArgument, "too large");
  expectFail("alltoall-in-place", kumiAllToAll(c.data(), c.data(), 64, kumiFloat32, comm, nullptr), kumiInvalidArgument, "in place (send buffer == receive buffer) is not supported");
  expectFail("alltoall-overlap", kumiAllToAll(c.data(), c.data() + 1, 32, kumiFloat32, comm, nullptr), kumiInvalidArgument, "overlap");
  expectFail("alltoall-stream", kumiAllToAll(c.data(), d.data(), 64, kumiFloat32, comm, &dummy), kumiInvalidArgument, "CUDA stream");
  expectFail("stream", kumiAllReduce(a.data(), b.data(), 64, kumiFloat32, kumiSum, comm, &dummy), kumiInvalidArgument, "CUDA stream");
  expectFail("null-comm", kumiAllReduce(a.data(), b.data(), 64, kumiFloat32, kumiSum, nullptr, nullptr), kumiInvalidUsage, "NULL");
  // Still usable, and the output is right.
  kumiResult_t r = kumiAllReduce(a.data(), b.data(), 64, kumiFloat32, kumiSum, comm, nullptr);
  report("after-errors", r);
  if (r != kumiSuccess || b[0] != static_cast<float>(size)) {
    std::printf("MISMATCH after-errors: allreduce gave %g\n", static_cast<double>(b[0]));
    ++failures;
  }
  kumiCommDestroy(comm);
  std::printf("%s local-args\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}

// Rank 0 passes a different count: every rank must fail, none may hang, none may report success.
int countMismatch() {
  kumiComm_t comm = initOrDie();
  int rank = 0;
  kumiCommRank(comm, &rank);
  const size_t count = rank == 0 ? 1024 : 2048;
  std::vector<float> a(2048, 1.f), b(2048, 0.f);
  auto t0 = std::chrono::steady_clock::now();
  kumiResult_t r = kumiAllReduce(a.data(), b.data(), count, kumiFloat32, kumiSum, comm, nullptr);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report("mismatch", r);
  std::printf("ELAPSED %.3f\n", s);
  // A failed communicator keeps failing with the original story.
  kumiResult_t again = kumiAllReduce(a.data(), b.data(), count, kumiFloat32, kumiSum, comm, nullptr);
  report("again", again);
  kumiCommDestroy(comm);
  return r == kumiSuccess ? 1 : 0;
}

// The rank given by argv dies abruptly in the middle of a stream of allreduces.
int peerDies(int victim) {
  kumiComm_t comm = initOrDie();
  int rank = 0;
  kumiCommRank(comm, &rank);
  std::vector<float> a(1 << 20, 1.f), b(1 << 20, 0.f);
  for (int i = 0; i < 1000; ++i) {
    if (rank == victim && i == 3) _exit(9);
    auto t0 = std::chrono::steady_clock::now();
    kumiResult_t r = kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, comm, nullptr);
    if (r != kumiSuccess) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      report("peer-dies", r);
      std::printf("ELAPSED %.3f\n", s);
      kumiCommDestroy(comm);
      return 0;
    }
  }
  std::printf("NO ERROR SEEN\n");
  return 1;
}

// Just initialise and report (world size disagreement, missing ranks, unreachable store...).
int initOnly() {
  kumiComm_t comm = nullptr;
  auto t0 = std::chrono::steady_clock::now();
  kumiResult_t r = kumiCommInitFromEnv(&comm);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report("init", r);
  std::printf("ELAPSED %.3f\n", s);
  if (r == kumiSuccess) {
    float x = 1, y = 0;
    report("allreduce", kumiAllReduce(&x, &y, 1, kumiFloat32, kumiSum, comm, nullptr));
    kumiCommDestroy(comm);
  }
  return r == kumiSuccess ? 0 : 4;
}

// Another thread aborts while this one waits in an allreduce that a peer never joins.
int abortFromThread() {
  kumiComm_t comm = initOrDie();
  int rank = 0;
  kumiCommRank(comm, &rank);
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(3));  // never joins; rank 0 aborts first
    return 0;
  }
  std::thread killer([comm] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    kumiCommAbort(comm);
  });
  float x = 1, y = 0;
  auto t0 = std::chrono::steady_clock::now();
  kumiResult_t r = kumiAllReduce(&x, &y, 1, kumiFloat32, kumiSum, comm, nullptr);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  killer.join();
  report("aborted", r);
  std::printf("ELAPSED %.3f\n", s);
  return r == kumiAborted ? 0 : 1;
}

// Rank 1 stays alive but never calls the collective: the others must time out at KUMI_TIMEOUT
// with an error that names rank 1, not hang.
int stuckPeer() {
  kumiComm_t comm = initOrDie();
  int rank = 0;
  kumiCommRank(comm, &rank);
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(6));
    kumiCommDestroy(comm);
    return 0;
  }
  std::vector<float> a(1 << 16, 1.f), b(1 << 16, 0.f);
  auto t0 = std::chrono::steady_clock::now();
  kumiResult_t r = kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, comm, nullptr);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report("stuck", r);
  std::printf("ELAPSED %.3f\n", s);
  kumiCommDestroy(comm);
  return r == kumiSuccess ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string s = argc > 1 ? argv[1] : "";
  if (s == "local-args") return localArgs();
  if (s == "count-mismatch") return countMismatch();
  if (s == "peer-dies") return peerDies(argc > 2 ? std::atoi(argv[2]) : 1);
  if (s == "init-only") return initOnly();
  if (s == "abort") return abortFromThread();
  if (s == "stuck-peer") return stuckPeer();
  std::fprintf(stderr, "usage: error_scenarios local-args|count-mismatch|peer-dies [rank]|init-only|abort|stuck-peer\n");
  return 2;
}
