// Shared by the multi-process scenario drivers (tests/mp/*_scenarios.cpp, misuse.cpp): the
// "RESULT <what> <code> <name>: <message>" lines the script tests parse, and init or exit.
#pragma once

#include <kumi/kumi.h>

#include <cstdio>
#include <cstdlib>

namespace kumi::scenario {

inline void report(const char* what, kumiResult_t r) {
  std::printf("RESULT %s %d %s: %s\n", what, static_cast<int>(r), kumiGetErrorString(r),
              r == kumiSuccess ? "" : kumiGetLastError());
  std::fflush(stdout);
}

// Initialises from the environment; on failure reports "init" and exits with status 3.
inline kumiComm_t initOrDie() {
  kumiComm_t comm = nullptr;
  kumiResult_t r = kumiCommInitFromEnv(&comm);
  if (r != kumiSuccess) {
    report("init", r);
    std::exit(3);
  }
  return comm;
}

inline int rankOf(kumiComm_t comm) {
  int rank = -1;
  kumiCommRank(comm, &rank);
  return rank;
}

}  // namespace kumi::scenario
