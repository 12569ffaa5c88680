// Scenarios of the reliability promises, one per invocation, driven by
// tests/scripts/test_reliability.py: ranks that disagree on a call's arguments, corrupted
// links, and the flight recorder. Each prints "RESULT <what> <code> <name>: <message>" lines
// (and a few self-checked "OK"/"WRONG" lines) for the driver to assert on.
#include <kumi/kumi.h>
#include <signal.h>
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
using kumi::scenario::rankOf;
using kumi::scenario::report;

// Rank 0 makes the call with one argument changed; every rank must fail, naming both calls.
int mismatch(const std::string& what) {
  kumiComm_t comm = initOrDie();
  const int rank = rankOf(comm);
  const bool odd = rank == 0;
  std::vector<float> a(4096, 1.f), b(4096, 0.f);
  // One good call first, so the mismatch is not the first use of the connections.
  report("warm-up", kumiAllReduce(a.data(), b.data(), 16, kumiFloat32, kumiSum, comm, nullptr));
  kumiResult_t r = kumiSuccess;
  if (what == "count") r = kumiAllReduce(a.data(), b.data(), odd ? 1024 : 2048, kumiFloat32, kumiSum, comm, nullptr);
  else if (what == "type") r = kumiAllReduce(a.data(), b.data(), 1024, odd ? kumiInt32 : kumiFloat32, kumiSum, comm, nullptr);
  else if (what == "op") r = kumiAllReduce(a.data(), b.data(), 1024, kumiFloat32, odd ? kumiMax : kumiSum, comm, nullptr);
  else if (what == "root") r = kumiBroadcast(a.data(), b.data(), 1024, kumiFloat32, odd ? 1 : 0, comm, nullptr);
  else if (what == "kind") {
    r = odd ? kumiAllGather(a.data(), b.data(), 256, kumiFloat32, comm, nullptr)
            : kumiAllReduce(a.data(), b.data(), 1024, kumiFloat32, kumiSum, comm, nullptr);
  } else if (what == "p2p") {
    // Rank 0 sends 100 floats, rank 1 expects 200; the others watch a barrier fail.
    if (rank == 0) r = kumiSend(a.data(), 100, kumiFloat32, 1, comm, nullptr);
    if (rank == 1) r = kumiRecv(b.data(), 200, kumiFloat32, 0, comm, nullptr);
    if (r == kumiSuccess) r = kumiBarrier(comm, nullptr);
  } else {
    std::fprintf(stderr, "unknown mismatch %s\n", what.c_str());
    return 2;
  }
  report("mismatch", r);
  kumiCommDestroy(comm);
  return 0;
}

// Allreduces with known results: with KUMI_TEST_CORRUPT_EVERY the transport flips bits after
// the link; KUMI_CHECKSUM=1 must turn that into an error naming the link, without it the data
// is silently wrong (which this scenario reports as WRONG, to show the injection is real).
int corrupt() {
  kumiComm_t comm = initOrDie();
  int size = 1;
  kumiCommSize(comm, &size);
  std::vector<float> a(1 << 16), b(1 << 16);
  bool wrong = false;
  for (int i = 0; i < 50; ++i) {
    const std::size_t count = i % 2 ? a.size() : 300;
    for (std::size_t k = 0; k < count; ++k) a[k] = static_cast<float>(k % 7);
    kumiResult_t r = kumiAllReduce(a.data(), b.data(), count, kumiFloat32, kumiSum, comm, nullptr);
    if (r != kumiSuccess) {
      report("corrupt", r);
      kumiCommDestroy(comm);
      return 0;
    }
    // On wrong data, say so once and keep calling: leaving early would fail the other ranks'
    // calls, which this scenario must not mistake for a detection.
    for (std::size_t k = 0; k < count && !wrong; ++k)
      if (b[k] != static_cast<float>(size * static_cast<int>(k % 7))) {
        std::printf("WRONG data at call %d element %zu: %g\n", i, k, static_cast<double>(b[k]));
        std::fflush(stdout);
        wrong = true;
      }
  }
  if (!wrong) std::printf("ALL RIGHT\n");
  kumiCommDestroy(comm);
  return 0;
}

// A few calls, then a dump on request; then rank 1 stalls in a sleep while the others wait in
// an allreduce, and the driver signals a waiting rank (KUMI_FLIGHT_RECORDER_SIGNAL) to dump.
int flight(const char* path) {
  kumiComm_t comm = initOrDie();
  const int rank = rankOf(comm);
  std::vector<float> a(1000, 1.f), b(1000, 0.f);
  for (int i = 0; i < 5; ++i) kumiAllReduce(a.data(), b.data(), 10 * (i + 1), kumiFloat32, kumiSum, comm, nullptr);
  kumiBroadcast(a.data(), b.data(), 7, kumiFloat32, 0, comm, nullptr);
  const std::string mine = std::string(path) + "." + std::to_string(rank);
  report("dump", kumiCommDumpFlightRecorder(comm, mine.c_str()));
  report("dump-null-comm", kumiCommDumpFlightRecorder(nullptr, mine.c_str()));
  report("dump-bad-path", kumiCommDumpFlightRecorder(comm, "/nonexistent-dir/x/y"));
  std::printf("WAITING pid %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(4));
  } else {
    // Fails at KUMI_TIMEOUT (rank 1 never joins): the recorder is written on the failure too.
    report("stalled", kumiAllReduce(a.data(), b.data(), 64, kumiFloat32, kumiSum, comm, nullptr));
  }
  kumiCommDestroy(comm);
  return 0;
}

// The elastic-training pattern: rank 1 aborts while the others wait in an allreduce; they fail
// naming it, everyone drops the communicator and builds a new one that works.
int recover() {
  kumiComm_t comm = initOrDie();
  const int rank = rankOf(comm);
  int size = 1;
  kumiCommSize(comm, &size);
  std::vector<float> a(1 << 14, 1.f), b(1 << 14, 0.f);
  report("before", kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, comm, nullptr));
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    report("abort", kumiCommAbort(comm));
  } else {
    report("during", kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, comm, nullptr));
    report("destroy", kumiCommDestroy(comm));
  }
  kumiComm_t again = initOrDie();
  kumiResult_t r = kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, again, nullptr);
  report("after", r);
  if (r == kumiSuccess && b[0] != static_cast<float>(size)) std::printf("WRONG after recovery: %g\n", static_cast<double>(b[0]));
  kumiCommDestroy(again);
  return 0;
}

// Allreduces for up to `seconds`, saying when the loop runs; on the first error reports it with
// the wall-clock time, so that a driver that cut a link can time the detection.
int loop(double seconds) {
  kumiComm_t comm = initOrDie();
  std::vector<float> a(1 << 16, 1.f), b(1 << 16, 0.f);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  bool said = false;
  while (std::chrono::steady_clock::now() < end) {
    kumiResult_t r = kumiAllReduce(a.data(), b.data(), a.size(), kumiFloat32, kumiSum, comm, nullptr);
    if (r != kumiSuccess) {
      const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      report("loop", r);
      std::printf("FAILED_AT %.3f\n", now);
      std::fflush(stdout);
      kumiCommDestroy(comm);
      return 0;
    }
    if (!said) {
      std::printf("LOOPING\n");
      std::fflush(stdout);
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("NO ERROR SEEN\n");
  kumiCommDestroy(comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string s = argc > 1 ? argv[1] : "";
  if (s == "mismatch" && argc > 2) return mismatch(argv[2]);
  if (s == "corrupt") return corrupt();
  if (s == "recover") return recover();
  if (s == "loop" && argc > 2) return loop(std::atof(argv[2]));
  if (s == "flight" && argc > 2) return flight(argv[2]);
  std::fprintf(stderr, "usage: reliability_scenarios mismatch count|type|op|root|kind|p2p | corrupt | recover | loop SECONDS | flight PATH\n");
  return 2;
}
