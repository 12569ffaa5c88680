// API misuse scenarios, one per invocation, under kumirun (2 ranks unless noted): NULL and made-up
// handles, use after destroy, double destroy, destroy or a second collective while another
// thread is inside one, abort twice, abort then destroy, aborts racing with destroys, abort during
// a split. Every misuse must be an error code with a message, never a crash, hang or sanitizer
// report. Each call is printed as "RESULT <what> <code> <name>: <message>" and checked here; a
// deviation prints "MISMATCH ..."; the last line is "OK <scenario>" or "FAILED <scenario>", and
// the exit status says the same, so the scenarios run as CTest tests in the sanitizer lanes too.
#include <kumi/kumi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/scenario.hpp"

namespace {

using Clock = std::chrono::steady_clock;
int failures = 0;

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void mismatch(const std::string& what) {
  std::printf("MISMATCH %s\n", what.c_str());
  std::fflush(stdout);
  ++failures;
}

// Expects `code` and, unless needle is empty, a message containing it.
void expect(const std::string& what, kumiResult_t r, kumiResult_t code, const char* needle) {
  const char* msg = r == kumiSuccess ? "" : kumiGetLastError();
  std::printf("RESULT %s %d %s: %s\n", what.c_str(), static_cast<int>(r), kumiGetErrorString(r), msg);
  std::fflush(stdout);
  if (r != code || (*needle && std::strstr(msg, needle) == nullptr))
    mismatch(what + ": wanted code " + std::to_string(code) + " and \"" + needle + "\"");
  if (r != kumiSuccess && *msg == '\0') mismatch(what + ": an error without a message");
}

void expectTrue(bool ok, const std::string& what) {
  if (!ok) mismatch(what);
}

using kumi::scenario::initOrDie;
using kumi::scenario::rankOf;

// A one-element sum over the communicator; true if it succeeded with the right value.
bool allreduceWorks(kumiComm_t comm, int size) {
  float x = 1.f, y = 0.f;
  const kumiResult_t r = kumiAllReduce(&x, &y, 1, kumiFloat32, kumiSum, comm, nullptr);
  return r == kumiSuccess && y == static_cast<float>(size);
}

// Every function that takes a communicator, called with `comm`: each must give `code` with
// `needle` in its message (and touch no output it should not).
void everyCall(const char* tag, kumiComm_t comm, kumiResult_t code, const char* needle) {
  float a[8] = {}, b[64] = {};
  int i = -7;
  const char* name = "unset";
  kumiComm_t out = reinterpret_cast<kumiComm_t>(&i);  // must come back NULL
  auto what = [&](const char* fn) { return std::string(tag) + "-" + fn; };
  expect(what("split"), kumiCommSplit(comm, 0, 0, &out), code, needle);
  expectTrue(out == nullptr, std::string(tag) + ": kumiCommSplit left *newcomm set");
  expect(what("rank"), kumiCommRank(comm, &i), code, needle);
  expect(what("size"), kumiCommSize(comm, &i), code, needle);
  expect(what("host"), kumiCommHost(comm, 0, &i), code, needle);
  expectTrue(i == -7, std::string(tag) + ": a failed call wrote its output");
  expect(what("algorithm"), kumiCommGetAlgorithm(comm, &name), code, needle);
  expect(what("allreduce"), kumiAllReduce(a, b, 8, kumiFloat32, kumiSum, comm, nullptr), code, needle);
  expect(what("reduce"), kumiReduce(a, b, 8, kumiFloat32, kumiSum, 0, comm, nullptr), code, needle);
  expect(what("broadcast"), kumiBroadcast(a, b, 8, kumiFloat32, 0, comm, nullptr), code, needle);
  expect(what("reduce-scatter"), kumiReduceScatter(b, a, 1, kumiFloat32, kumiSum, comm, nullptr), code, needle);
  expect(what("allgather"), kumiAllGather(a, b, 1, kumiFloat32, comm, nullptr), code, needle);
  expect(what("alltoall"), kumiAllToAll(a, b, 1, kumiFloat32, comm, nullptr), code, needle);
  expect(what("barrier"), kumiBarrier(comm, nullptr), code, needle);
  expect(what("send"), kumiSend(a, 8, kumiFloat32, 1, comm, nullptr), code, needle);
  expect(what("recv"), kumiRecv(b, 8, kumiFloat32, 1, comm, nullptr), code, needle);
}

int nullHandles() {
  everyCall("null", nullptr, kumiInvalidUsage, "communicator handle is NULL");
  expect("null-destroy", kumiCommDestroy(nullptr), kumiSuccess, "");
  expect("null-abort", kumiCommAbort(nullptr), kumiSuccess, "");
  expect("null-init-env", kumiCommInitFromEnv(nullptr), kumiInvalidArgument, "comm is NULL");
  expect("null-init-rank", kumiCommInitRank(nullptr, 1, 0, nullptr), kumiInvalidArgument, "comm is NULL");
  expect("null-init-config", kumiCommInitConfig(nullptr, nullptr), kumiInvalidArgument, "comm is NULL");
  expect("null-version", kumiGetVersion(nullptr), kumiInvalidArgument, "version is NULL");
  // NULL outputs with a real communicator: refused before any traffic, communicator unharmed.
  kumiComm_t comm = initOrDie();
  int size = 0;
  kumiCommSize(comm, &size);
  expect("null-out-split", kumiCommSplit(comm, 0, 0, nullptr), kumiInvalidArgument, "newcomm is NULL");
  expect("null-out-rank", kumiCommRank(comm, nullptr), kumiInvalidArgument, "rank is NULL");
  expect("null-out-size", kumiCommSize(comm, nullptr), kumiInvalidArgument, "size is NULL");
  expect("null-out-host", kumiCommHost(comm, 0, nullptr), kumiInvalidArgument, "host is NULL");
  expect("null-out-algorithm", kumiCommGetAlgorithm(comm, nullptr), kumiInvalidArgument, "name is NULL");
  // An address that never was a communicator is looked up, not read.
  double notAComm[4] = {};
  everyCall("made-up", reinterpret_cast<kumiComm_t>(notAComm), kumiInvalidUsage, "is not a communicator");
  expect("made-up-destroy", kumiCommDestroy(reinterpret_cast<kumiComm_t>(notAComm)), kumiInvalidUsage, "is not a communicator");
  expect("made-up-abort", kumiCommAbort(reinterpret_cast<kumiComm_t>(notAComm)), kumiInvalidUsage, "is not a communicator");
  expectTrue(allreduceWorks(comm, size), "the communicator does not work after the refused calls");
  expect("destroy", kumiCommDestroy(comm), kumiSuccess, "");
  return 0;
}

int useAfterDestroy() {
  kumiComm_t comm = initOrDie();
  int size = 0;
  kumiCommSize(comm, &size);
  kumiComm_t child = nullptr;
  expect("split", kumiCommSplit(comm, 0, rankOf(comm), &child), kumiSuccess, "");
  expect("destroy-child", kumiCommDestroy(child), kumiSuccess, "");
  everyCall("child-after-destroy", child, kumiInvalidUsage, "was destroyed");
  expectTrue(allreduceWorks(comm, size), "the parent does not work after its child was destroyed");
  expect("destroy", kumiCommDestroy(comm), kumiSuccess, "");
  everyCall("after-destroy", comm, kumiInvalidUsage, "was destroyed");
  expect("double-destroy", kumiCommDestroy(comm), kumiInvalidUsage, "was destroyed");
  expect("abort-after-destroy", kumiCommAbort(comm), kumiInvalidUsage, "was destroyed");
  // A new communicator gets a new address, and the stale handle stays refused.
  kumiComm_t again = initOrDie();
  expectTrue(again != comm && again != child, "a new communicator got a destroyed one's handle");
  expect("stale-after-new", kumiBarrier(comm, nullptr), kumiInvalidUsage, "was destroyed");
  expectTrue(allreduceWorks(again, size), "a new communicator does not work after a destroyed one");
  expect("destroy-new", kumiCommDestroy(again), kumiSuccess, "");
  expect("double-destroy-new", kumiCommDestroy(again), kumiInvalidUsage, "was destroyed");
  return 0;
}

// Abort twice, destroy after abort, and the recovery pattern: a new communicator afterwards.
int abortTwice() {
  kumiComm_t comm = initOrDie();
  int size = 0;
  kumiCommSize(comm, &size);
  expect("abort", kumiCommAbort(comm), kumiSuccess, "");
  expect("abort-again", kumiCommAbort(comm), kumiInvalidUsage, "was destroyed");
  expect("destroy-after-abort", kumiCommDestroy(comm), kumiInvalidUsage, "was destroyed");
  everyCall("after-abort", comm, kumiInvalidUsage, "was destroyed");
  kumiComm_t fresh = initOrDie();
  expectTrue(allreduceWorks(fresh, size), "a communicator made after an abort does not work");
  expect("destroy-fresh", kumiCommDestroy(fresh), kumiSuccess, "");
  return 0;
}

// Rank 0 starts an allreduce on a second thread, which waits for rank 1 (a second late); while it
// waits, this thread misuses the communicator with `misuse`, which must be refused at once and
// leave the allreduce to finish with the right result.
int whileBusy(const char* tag, const std::function<void(kumiComm_t)>& misuse) {
  kumiComm_t comm = initOrDie();
  int size = 0;
  kumiCommSize(comm, &size);
  if (rankOf(comm) != 0) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    expectTrue(allreduceWorks(comm, size), std::string(tag) + ": the late rank's allreduce failed or was wrong");
  } else {
    std::atomic<bool> ok{false}, entered{false};
    std::thread worker([&] {
      entered.store(true);
      ok.store(allreduceWorks(comm, size));
    });
    while (!entered.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the worker now waits for rank 1
    const auto t0 = Clock::now();
    misuse(comm);
    const double s = secondsSince(t0);
    std::printf("ELAPSED %.3f\n", s);
    expectTrue(s < 0.5, std::string(tag) + ": the refusal took " + std::to_string(s) + " s (it must not wait)");
    worker.join();
    expectTrue(ok.load(), std::string(tag) + ": the allreduce running on the other thread failed or was wrong");
  }
  expectTrue(allreduceWorks(comm, size), std::string(tag) + ": the communicator does not work afterwards");
  expect("destroy", kumiCommDestroy(comm), kumiSuccess, "");
  return 0;
}

int destroyWhileBusy() {
  return whileBusy("destroy-while-busy", [](kumiComm_t comm) {
    expect("destroy-busy", kumiCommDestroy(comm), kumiInvalidUsage, "in use by 1 call");
  });
}

int twoThreads() {
  return whileBusy("two-threads", [](kumiComm_t comm) {
    float a[4] = {}, b[4] = {};
    const char* busy = "already running a collective on another thread";
    expect("second-allreduce", kumiAllReduce(a, b, 4, kumiFloat32, kumiSum, comm, nullptr), kumiInvalidUsage, busy);
    expect("second-broadcast", kumiBroadcast(a, b, 4, kumiFloat32, 0, comm, nullptr), kumiInvalidUsage, busy);
    expect("second-barrier", kumiBarrier(comm, nullptr), kumiInvalidUsage, busy);
    kumiComm_t child = nullptr;
    expect("second-split", kumiCommSplit(comm, 0, 0, &child), kumiInvalidUsage, busy);
    expectTrue(child == nullptr, "a refused split set *newcomm");
    // What is not a collective may still be asked meanwhile.
    int r = -1;
    expect("rank-meanwhile", kumiCommRank(comm, &r), kumiSuccess, "");
    expectTrue(r == 0, "kumiCommRank gave a wrong rank meanwhile");
  });
}

// Aborts racing with aborts, destroys and other calls on one handle (local, one-rank
// communicators: the race is in the handle checks, not the network). Exactly one teardown may
// succeed; the other and every call that comes after must be refused, none may crash.
int teardownRaces() {
  constexpr int kRounds = 300;
  for (int round = 0; round < kRounds; ++round) {
    kumiComm_t comm = nullptr;
    if (kumiCommInitRank(&comm, 1, 0, nullptr) != kumiSuccess) {
      mismatch(std::string("local init: ") + kumiGetLastError());
      break;
    }
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    kumiResult_t results[2] = {kumiSuccess, kumiSuccess};
    std::string messages[2];
    auto teardown = [&](int who, bool destroy) {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      results[who] = destroy ? kumiCommDestroy(comm) : kumiCommAbort(comm);
      messages[who] = kumiGetLastError();
    };
    std::thread first(teardown, 0, false);
    std::thread second(teardown, 1, round % 2 == 1);  // odd rounds: abort vs destroy
    std::string odd;
    std::thread user([&] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (;;) {
        int s = 0;
        float x = 1.f, y = 0.f;
        kumiResult_t r = round % 3 == 0 ? kumiCommSize(comm, &s) : kumiAllReduce(&x, &y, 1, kumiFloat32, kumiSum, comm, nullptr);
        if (r == kumiSuccess) continue;
        // Refused as destroyed, or aborted while inside (a one-rank allreduce has no steps, so
        // that is rare), or refused as busy when another thread is inside a collective: never
        // anything else.
        const char* m = kumiGetLastError();
        if (!(r == kumiInvalidUsage && std::strstr(m, "was destroyed")) && r != kumiAborted)
          odd = std::string("code ") + std::to_string(r) + ": " + m;
        if (r == kumiInvalidUsage) break;
      }
    });
    while (ready.load() < 3) std::this_thread::yield();
    go.store(true);
    first.join();
    second.join();
    user.join();
    const int successes = (results[0] == kumiSuccess) + (results[1] == kumiSuccess);
    if (successes != 1) mismatch("round " + std::to_string(round) + ": " + std::to_string(successes) + " teardowns succeeded");
    for (int who = 0; who < 2; ++who)
      if (results[who] != kumiSuccess &&
          !(results[who] == kumiInvalidUsage && (std::strstr(messages[who].c_str(), "was destroyed") ||
                                                 std::strstr(messages[who].c_str(), "in use by"))))
        mismatch("round " + std::to_string(round) + ": teardown failed with code " + std::to_string(results[who]) + ": " +
                 messages[who]);
    if (!odd.empty()) mismatch("round " + std::to_string(round) + ": a call racing with the teardown gave " + odd);
    if (results[0] != kumiSuccess && results[1] != kumiSuccess) kumiCommAbort(comm);  // not leaked if both failed
    if (failures > 10) break;
  }
  std::printf("RESULT teardown-races 0 success: %d rounds\n", kRounds);
  return 0;
}

// Rank 0 waits in a split that rank 1 joins late; another thread aborts the parent meanwhile.
// The split must give kumiAborted at once; rank 1's late split must fail too, not hang; both
// ranks can then build a new communicator.
int abortDuringSplit() {
  kumiComm_t comm = initOrDie();
  int size = 0;
  kumiCommSize(comm, &size);
  kumiComm_t child = reinterpret_cast<kumiComm_t>(&size);
  if (rankOf(comm) == 0) {
    std::thread aborter([comm] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      expect("abort-parent", kumiCommAbort(comm), kumiSuccess, "");
    });
    const auto t0 = Clock::now();
    expect("split-aborted", kumiCommSplit(comm, 0, 0, &child), kumiAborted, "");
    const double s = secondsSince(t0);
    aborter.join();
    std::printf("ELAPSED %.3f\n", s);
    expectTrue(s < 1.5, "the aborted split took " + std::to_string(s) + " s");
    expectTrue(child == nullptr, "an aborted split set *newcomm");
    expect("destroy-after-abort", kumiCommDestroy(comm), kumiInvalidUsage, "was destroyed");
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    const auto t0 = Clock::now();
    const kumiResult_t r = kumiCommSplit(comm, 0, 0, &child);
    const double s = secondsSince(t0);
    std::printf("RESULT late-split %d %s: %s\nELAPSED %.3f\n", static_cast<int>(r), kumiGetErrorString(r),
                r == kumiSuccess ? "" : kumiGetLastError(), s);
    expectTrue(r != kumiSuccess, "the late split succeeded although rank 0 aborted the parent");
    expectTrue(s < 10.0, "the late split took " + std::to_string(s) + " s to fail");
    expectTrue(child == nullptr, "a failed split set *newcomm");
    expect("destroy-failed", kumiCommDestroy(comm), kumiSuccess, "");
  }
  kumiComm_t fresh = initOrDie();
  expectTrue(allreduceWorks(fresh, size), "a communicator made after the aborted split does not work");
  expect("destroy-fresh", kumiCommDestroy(fresh), kumiSuccess, "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string s = argc > 1 ? argv[1] : "";
  int (*scenario)() = nullptr;
  if (s == "null-handles") scenario = nullHandles;
  if (s == "use-after-destroy") scenario = useAfterDestroy;
  if (s == "abort-twice") scenario = abortTwice;
  if (s == "destroy-while-busy") scenario = destroyWhileBusy;
  if (s == "two-threads") scenario = twoThreads;
  if (s == "teardown-races") scenario = teardownRaces;
  if (s == "abort-during-split") scenario = abortDuringSplit;
  if (scenario == nullptr) {
    std::fprintf(stderr, "usage: misuse null-handles|use-after-destroy|abort-twice|destroy-while-busy|two-threads|"
                         "teardown-races|abort-during-split\n");
    return 2;
  }
  scenario();
  std::printf("%s %s\n", failures ? "FAILED" : "OK", s.c_str());
  return failures ? 1 : 0;
}
