// What kumi-netcheck tells its readers: Prometheus metrics (stable names, docs/NETCHECK.md), the
// JSON report with every sample and finding, the table on the terminal, and the exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/netcheck/findings.hpp"
#include "tools/netcheck/prometheus_text.hpp"

namespace kumi::netcheck {

struct AllreduceRow {
  std::string algorithm;  // "auto" (the planner) or a forced one
  std::string ran;        // what the library reports it ran
  std::uint64_t bytes = 0;
  double timeUs = 0;      // median over repeats of the slowest rank's time
  double busbw = 0;       // bytes per second, nccl-tests' definition
  std::vector<double> samplesUs;  // every repeat's time (the slowest rank's), microseconds
};

struct RunInfo {
  std::vector<std::string> nodeNames;
  int ranks = 0;
  double startedAt = 0;  // seconds since the epoch
  double seconds = 0;    // wall time of the measurements
  std::vector<std::string> notes;  // e.g. the budget ran out after round 3 of 7
  bool complete = true;            // every planned measurement ran
  std::string failure;             // not empty: the run failed (exit code 2)
};

// 0 healthy, 1 degraded (any finding), 2 failed to run.
int exitCode(const Analysis& a, const RunInfo& run);

std::vector<MetricFamily> metricFamilies(const Analysis& a, const std::vector<AllreduceRow>& allreduce,
                                         const RunInfo& run);
std::string jsonReport(const Analysis& a, const std::vector<AllreduceRow>& allreduce, const RunInfo& run);
std::string textReport(const Analysis& a, const std::vector<AllreduceRow>& allreduce, const RunInfo& run);

}  // namespace kumi::netcheck
