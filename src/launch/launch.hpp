// Launch detection: which launcher started this process, and what it says about the job (rank,
// world size, local and node placement, coordinator, job id, restart generation). Every value
// remembers the variable (or file) it came from, so that a wrong value can be traced to its
// source. The launchers are tables (src/launch/launchers_*.cpp); docs/LAUNCH.md lists them.
//
// Pure: the environment, the hostname and the files it may read are inputs, so tests need no
// real environment. Not wired into communicator init (yet): callers decide what to do with it.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kumi::launch {

// Variable name -> value. An empty value counts as unset, as everywhere in kumi (core/env.hpp).
using Environment = std::map<std::string, std::string>;

// The few files a launcher leaves behind (Volcano's /etc/volcano/<task>.host, the Open MPI
// hostfile, /etc/hosts for the pod's FQDN). Injectable so that tests need no such files.
struct FileSystem {
  std::function<std::optional<std::string>(const std::string& path)> read;    // nullopt: absent
  std::function<std::vector<std::string>(const std::string& dir)> listDir;   // file names; {} if absent
};

// The real files of this machine.
FileSystem realFileSystem();

// A value and where it came from: a variable name ("RANK"), a file, or a rule ("default").
template <class T>
struct Sourced {
  std::optional<T> value;
  std::string source;

  explicit operator bool() const { return value.has_value(); }
  const T& operator*() const { return *value; }
  const T* operator->() const { return &*value; }
  void set(T v, std::string from) {
    value = std::move(v);
    source = std::move(from);
  }
};

struct LaunchInfo {
  std::string launcher = "none";         // the innermost launcher detected ("torchrun", "slurm", ...)
  std::vector<std::string> outerLaunchers;  // others detected and consistent with it (e.g. "slurm")
  Sourced<long long> rank, worldSize, localRank, localSize, nodeRank, nodeCount;
  Sourced<std::string> coordinatorHost;  // a host name, an address, or "file:///dir" (KUMI_STORE)
  Sourced<long long> coordinatorPort;
  Sourced<std::string> jobId;
  Sourced<long long> generation;         // the job's restart attempt: every rank has the same
  Sourced<long long> incarnation;        // this rank's own restarts (a pod replaced alone): ranks differ
  std::vector<std::string> warnings;     // also logged at WARN: explicit KUMI_* overriding a launcher
  // The host (pod) name of node n where the launcher's naming says it (Indexed Job "<job>-<n>",
  // a PyTorchJob's master and workers, JobSet, LWS, Volcano's and Slurm's host lists): a join
  // that times out names the pods that never came. Empty function, or "": unknown.
  std::function<std::string(long long node)> nodeHost;
  std::string nodeHostSource;

  bool detected() const { return launcher != "none"; }
};

// The coordinator port when a launcher gives none: KUMI_PORT, else this. One above torch's
// MASTER_PORT default (29500), so that kumi's store never takes the port of torch's own store.
inline constexpr int kDefaultCoordinatorPort = 29501;

// Detects the launcher from `env`, `hostname` and `files`. Throws kumi::Error
// (kumiInvalidArgument) naming the variables when a value is malformed, out of range, or two
// launchers contradict each other. Nothing detected is not an error: launcher "none".
LaunchInfo detect(const Environment& env, const std::string& hostname, const FileSystem& files);
LaunchInfo detect(const Environment& env, const std::string& hostname);  // with realFileSystem()

// This process: its environment, gethostname(), the real files.
LaunchInfo detectFromProcess();

}  // namespace kumi::launch
