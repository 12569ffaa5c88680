// From measured links to findings: which links are slow against what they should do, and whether
// the cause is a node (every link of it slow), one NIC of a node (one rail), a whole rail, or a
// single pair. Operators drain a node, replace a NIC or a cable: each needs a different finding.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace kumi::netcheck {

// One direction of one node pair on one rail, over one transport.
struct LinkKey {
  int src = 0, dst = 0;  // node indices
  int rail = 0;
  std::string transport;
  auto operator<=>(const LinkKey&) const = default;
};

struct LinkResult {
  LinkKey key;
  double bandwidth = 0;  // bytes per second, median of the repeats; 0 when failed
  double latency = 0;    // seconds (one way), median of the repeats
  double spread = 0;     // (p90 - p10) / median of the bandwidth repeats
  int repeats = 0;
  std::vector<double> samples;  // every bandwidth sample, bytes per second
  std::string error;     // not empty: the measurement failed (the link counts as slow, critical)
};

// What a link is expected to do, from a baseline file (by node names, so that a job on other
// ranks still matches) or from the thresholds per link class.
struct Expected {
  double bandwidth = 0;  // bytes per second; 0: unknown
  double latency = 0;    // seconds; 0: unknown
};
using Baseline = std::map<std::tuple<std::string, std::string, int, std::string>, Expected>;  // src, dst, rail, transport

struct AnalysisOptions {
  double minDrop = 0.2;        // a link is slow only when at least this much below expected...
  double madFactor = 4;        // ...and further below the peers' median than this many scaled MADs
  double criticalDrop = 0.5;   // at least this much below expected: critical, not a warning
  double latencyRise = 1.0;    // latency above expected by this fraction (1.0: twice) is a finding,
  double latencyFloor = 25e-6; // and by at least this many seconds: less is scheduling noise on a busy host
  double nodeShare = 0.75;     // a node (or one NIC) is blamed when this share of its links is slow
  std::map<std::string, Expected> thresholds;  // per transport: floor on bandwidth, cap on latency
};

enum class Severity { Warning, Critical };
enum class Scope { Node, Nic, Rail, Pair };
const char* severityName(Severity s);
const char* scopeName(Scope s);

struct LinkVerdict {
  LinkResult link;
  Expected expected;
  std::string expectedFrom;  // "baseline", "threshold" or "peers"
  bool slow = false;          // bandwidth below expectation (or failed)
  bool laggy = false;         // latency above expectation
  double drop = 0;            // 1 - bandwidth / expected
};

struct Finding {
  Scope scope = Scope::Pair;
  Severity severity = Severity::Warning;
  int node = -1, peer = -1, rail = -1;  // what applies to the scope
  std::string transport;
  std::string summary;                // one line naming the culprit
  std::vector<std::string> evidence;  // the measured links behind it
};

struct Analysis {
  std::vector<LinkVerdict> links;
  std::vector<Finding> findings;
  bool healthy() const { return findings.empty(); }
  // The nodes a finding names (as node, NIC owner or pair end), for the per-node health gauge.
  std::vector<bool> nodesInFindings(int nodes) const;
};

Analysis analyse(const std::vector<LinkResult>& links, const std::vector<std::string>& nodeNames,
                 const Baseline& baseline, const AnalysisOptions& options);

}  // namespace kumi::netcheck
