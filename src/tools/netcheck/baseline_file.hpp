// The baseline file: what each link did when the cluster was known to be healthy
// (`kumi-netcheck --save-baseline`), read back by `--baseline` as the expectation per link.
// One line per directed link, by node name, so that a later job on other ranks still matches:
//
//   # kumi-netcheck baseline v1
//   # src dst rail transport bandwidth_bytes_per_second latency_seconds
//   node-a node-b 0 tcp 1.1e9 2.5e-05
#pragma once

#include <string>
#include <vector>

#include "tools/netcheck/findings.hpp"

namespace kumi::netcheck {

// Throws kumiInvalidArgument naming `source`, the line and what is wrong; a file that is not a
// baseline at all (no header) is refused whole rather than half-read.
Baseline parseBaseline(const std::string& text, const std::string& source);
std::string formatBaseline(const std::vector<LinkResult>& links, const std::vector<std::string>& nodeNames);
Baseline loadBaseline(const std::string& path);

}  // namespace kumi::netcheck
