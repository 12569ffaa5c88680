// kumi-netcheck's command line. Parsed apart from main so that every refusal is unit-tested.
#pragma once

#include <string>
#include <vector>

#include "tools/netcheck/findings.hpp"
#include "tools/netcheck/measure.hpp"

namespace kumi::netcheck {

struct Options {
  double budgetSeconds = 300;
  P2POptions p2p;
  SweepOptions sweep;
  bool intraNode = true;
  // --rails: measure the pairs once per rail, each time over a communicator bound to that rail's
  // interface (KUMI_SOCKET_IFNAME syntax); for one rank per node with several NICs (a pod per
  // node). Empty: the rail of a rank is its index on its node.
  std::vector<std::string> railInterfaces;
  AnalysisOptions analysis;
  std::string baseline, saveBaseline, metricsFile, pushgateway, json;
  std::string job = "kumi-netcheck";
  std::vector<std::pair<std::string, std::string>> grouping;  // --group label=value
  bool progress = true;
  bool help = false;
};

// "90", "90s", "5m", "1h", "1m30s": seconds. Throws kumiInvalidArgument naming the flag.
double parseDuration(const std::string& flag, const std::string& text);
Options parseOptions(const std::vector<std::string>& args);
const char* usageText();

// The algorithms `--algos all` means for allreduce.
std::vector<std::string> allAllreduceAlgorithms();

}  // namespace kumi::netcheck
