#include "topology/affinity.hpp"

#include <sched.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>

#include "core/error.hpp"

namespace kumi::topo {
namespace {

struct CpuSetDeleter {
  void operator()(cpu_set_t* s) const { CPU_FREE(s); }
};

// glibc's cpu_set_t holds 1024 CPUs; machines can have more, so size the set to fit.
struct DynamicCpuSet {
  std::unique_ptr<cpu_set_t, CpuSetDeleter> set;
  std::size_t bytes = 0;
  int capacity = 0;

  explicit DynamicCpuSet(int cpus) : set(CPU_ALLOC(cpus)), bytes(CPU_ALLOC_SIZE(cpus)), capacity(cpus) {
    if (!set) fail(kumiSystemError, "cannot allocate a CPU set of ", cpus, " CPUs");
    CPU_ZERO_S(bytes, set.get());
  }
};

std::set<pid_t> threadIds() {
  std::set<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec))
    out.insert(static_cast<pid_t>(std::atol(entry.path().filename().c_str())));
  return out;
}

}  // namespace

void bindThisProcess(const CpuList& cpus) {
  KUMI_REQUIRE_ARG(!cpus.empty(), "cannot bind to an empty CPU list");
  DynamicCpuSet s(cpus.back() + 1);
  for (int c : cpus) CPU_SET_S(c, s.bytes, s.set.get());

  // The calling thread first: its failure is the one worth reporting.
  if (sched_setaffinity(0, s.bytes, s.set.get()) != 0)
    failErrno("sched_setaffinity to CPUs ", formatCpuList(cpus));
  // Then every other thread; repeat while threads appear that were not there in the last pass.
  std::set<pid_t> done;
  for (int pass = 0; pass < 16; ++pass) {
    bool fresh = false;
    for (pid_t tid : threadIds()) {
      if (!done.insert(tid).second) continue;
      fresh = true;
      // A thread that exits meanwhile (ESRCH) no longer needs binding.
      if (sched_setaffinity(tid, s.bytes, s.set.get()) != 0 && errno != ESRCH)
        failErrno("sched_setaffinity of thread ", tid, " to CPUs ", formatCpuList(cpus));
    }
    if (!fresh) break;
  }
}

CpuList currentAffinity() {
  for (int cpus = 1024;; cpus *= 2) {
    DynamicCpuSet s(cpus);
    if (sched_getaffinity(0, s.bytes, s.set.get()) == 0) {
      CpuList out;
      for (int c = 0; c < s.capacity; ++c)
        if (CPU_ISSET_S(c, s.bytes, s.set.get())) out.push_back(c);
      return out;
    }
    // EINVAL: the kernel's mask is larger than ours.
    if (errno != EINVAL || cpus >= (1 << 20)) failErrno("sched_getaffinity");
  }
}

}  // namespace kumi::topo
