// Prometheus text exposition (version 0.0.4), as node_exporter's textfile collector reads it and
// the Pushgateway accepts it. Names and labels are checked here: a metric Prometheus refuses
// would silently drop the whole file at scrape time, far from whoever wrote it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kumi::netcheck {

struct MetricSample {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

struct MetricFamily {
  std::string name;
  std::string help;
  std::string type = "gauge";
  std::vector<MetricSample> samples;
};

bool validMetricName(const std::string& name);
bool validLabelName(const std::string& name);
// The text of the families, in order; throws kumiInvalidArgument naming a bad name.
std::string exposition(const std::vector<MetricFamily>& families);
// Writes text to path through a temporary file in the same directory and a rename, so that a
// collector never reads half a file. Throws kumiSystemError naming the path.
void writeFileAtomically(const std::string& path, const std::string& text);

}  // namespace kumi::netcheck
