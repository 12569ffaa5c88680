// Fault-injection driver, run by tests/scripts/test_faults.py: every rank loops over a mix of
// collectives (8 B .. 4 MiB, results checked in full) until one fails, while the test kills one
// rank with SIGKILL. Each rank prints, for the test to check:
//   LOOP <rank> <pid>            once it is in the loop (the test kills after this)
//   OP <index> <kind> <root>     before each collective (what the dead rank last entered)
//   RESULT fault <code> <name>: <message>, FAILED_AT <index>, ERRTIME <CLOCK_MONOTONIC seconds>
//                                when a collective fails (the test times the kill against it)
//   WRONG <index> <kind>: ...    when a collective returned success with a wrong result
//   NO ERROR SEEN                when the loop ran for its whole time without a failure
//   EXITING <CLOCK_MONOTONIC seconds>  once the failed communicator is destroyed
// Usage: fault_loop SEED MAX_SECONDS
#include <kumi/kumi.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "op_mix.hpp"

namespace {

double monotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // what Python's time.monotonic() reads on Linux
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fault_loop SEED MAX_SECONDS\n");
    return 2;
  }
  const std::uint64_t seed = std::strtoull(argv[1], nullptr, 10);
  const double maxSeconds = std::atof(argv[2]);
  constexpr std::size_t kMaxBytes = std::size_t{4} << 20;

  kumiComm_t comm = nullptr;
  if (kumiResult_t r = kumiCommInitFromEnv(&comm); r != kumiSuccess) {
    std::printf("RESULT init %d %s: %s\n", static_cast<int>(r), kumiGetErrorString(r), kumiGetLastError());
    return 3;
  }
  int rank = 0, size = 1;
  kumiCommRank(comm, &rank);
  kumiCommSize(comm, &size);
  kumi::mix::Sequence sequence(seed, size, 8, kMaxBytes);
  kumi::mix::Runner runner(kMaxBytes, rank, size);

  std::printf("LOOP %d %d\n", rank, static_cast<int>(::getpid()));
  std::fflush(stdout);
  const double start = monotonicSeconds();
  std::string wrong;
  for (std::uint64_t i = 0; monotonicSeconds() - start < maxSeconds; ++i) {
    const kumi::mix::Op op = sequence.next();
    std::printf("OP %llu %s %d\n", static_cast<unsigned long long>(i), kumi::mix::kindName(op.kind), op.root);
    std::fflush(stdout);
    const kumiResult_t r = runner.run(comm, op, i, &wrong);
    if (r != kumiSuccess) {
      const double at = monotonicSeconds();
      std::printf("RESULT fault %d %s: %s\nFAILED_AT %llu\nERRTIME %.6f\n", static_cast<int>(r), kumiGetErrorString(r),
                  kumiGetLastError(), static_cast<unsigned long long>(i), at);
      std::fflush(stdout);
      const kumiResult_t d = kumiCommDestroy(comm);
      if (d != kumiSuccess) std::printf("DESTROY FAILED %d: %s\n", static_cast<int>(d), kumiGetLastError());
      std::printf("EXITING %.6f\n", monotonicSeconds());
      return d == kumiSuccess ? 0 : 1;
    }
    if (!wrong.empty()) {
      std::printf("WRONG %llu %s: %s\n", static_cast<unsigned long long>(i), kumi::mix::kindName(op.kind), wrong.c_str());
      std::fflush(stdout);
      return 1;
    }
  }
  std::printf("NO ERROR SEEN\n");
  kumiCommDestroy(comm);
  return 1;
}
