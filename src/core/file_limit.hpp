// The process's descriptor limit, raised for a store server: every rank holds a connection to
// the store for the whole join, so a store for 4096 ranks needs more than 4096 descriptors, while
// the usual soft limit is 1024. The hard limit is the process's own to take.
#pragma once

#include <string>

namespace kumi {

struct FileLimit {
  std::string before, now;  // "1024", "unlimited"
  bool raised = false;
  std::string room;         // ranks a store could hold: "4032", "any number of"
};

// Raises the soft RLIMIT_NOFILE to the hard limit (where it is lower) and says what it became.
FileLimit raiseFileLimit();

}  // namespace kumi
