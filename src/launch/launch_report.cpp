#include "launch/launch_report.hpp"

#include <cstdio>
#include <string_view>
#include <type_traits>

#include "core/error.hpp"

namespace kumi::launch {

namespace {

// Every field, in one order for both formats. Pointers to members keep the two in step.
struct IntRow {
  const char* key;
  Sourced<long long> LaunchInfo::*field;
};
struct TextRow {
  const char* key;
  Sourced<std::string> LaunchInfo::*field;
};
constexpr IntRow kInts[] = {{"rank", &LaunchInfo::rank},           {"world_size", &LaunchInfo::worldSize},
                            {"local_rank", &LaunchInfo::localRank}, {"local_size", &LaunchInfo::localSize},
                            {"node_rank", &LaunchInfo::nodeRank},   {"node_count", &LaunchInfo::nodeCount}};
constexpr TextRow kHost{"coordinator_host", &LaunchInfo::coordinatorHost};
constexpr IntRow kPort{"coordinator_port", &LaunchInfo::coordinatorPort};
constexpr TextRow kJob{"job_id", &LaunchInfo::jobId};
constexpr IntRow kGeneration{"generation", &LaunchInfo::generation};
constexpr IntRow kIncarnation{"incarnation", &LaunchInfo::incarnation};

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

template <class T>
std::string textLine(const char* key, const Sourced<T>& f) {
  std::string k = key;
  k.resize(18, ' ');
  return f ? cat("  ", k, *f, "  (", f.source, ")\n") : cat("  ", k, "-\n");
}

template <class T>
std::string jsonField(const char* key, const Sourced<T>& f) {
  if (!f) return cat("    ", quote(key), ": null");
  std::string value;
  if constexpr (std::is_same_v<T, std::string>) value = quote(*f);
  else value = std::to_string(*f);
  return cat("    ", quote(key), ": {\"value\": ", value, ", \"source\": ", quote(f.source), "}");
}

}  // namespace

std::string formatText(const LaunchInfo& info) {
  std::string out = "launcher: " + info.launcher;
  if (!info.outerLaunchers.empty()) {
    out += " (inside:";
    for (const auto& l : info.outerLaunchers) out += " " + l;
    out += ")";
  }
  out += "\n";
  for (const auto& r : kInts) out += textLine(r.key, info.*(r.field));
  out += textLine(kHost.key, info.*(kHost.field));
  out += textLine(kPort.key, info.*(kPort.field));
  out += textLine(kJob.key, info.*(kJob.field));
  out += textLine(kGeneration.key, info.*(kGeneration.field));
  out += textLine(kIncarnation.key, info.*(kIncarnation.field));
  for (const auto& w : info.warnings) out += "warning: " + w + "\n";
  return out;
}

std::string formatJson(const LaunchInfo& info) {
  std::string out = "{\n  \"launcher\": " + quote(info.launcher) + ",\n  \"outer_launchers\": [";
  for (std::size_t i = 0; i < info.outerLaunchers.size(); ++i) out += (i ? ", " : "") + quote(info.outerLaunchers[i]);
  out += "],\n  \"fields\": {\n";
  for (const auto& r : kInts) out += jsonField(r.key, info.*(r.field)) + ",\n";
  out += jsonField(kHost.key, info.*(kHost.field)) + ",\n";
  out += jsonField(kPort.key, info.*(kPort.field)) + ",\n";
  out += jsonField(kJob.key, info.*(kJob.field)) + ",\n";
  out += jsonField(kGeneration.key, info.*(kGeneration.field)) + ",\n";
  out += jsonField(kIncarnation.key, info.*(kIncarnation.field)) + "\n  },\n  \"warnings\": [";
  for (std::size_t i = 0; i < info.warnings.size(); ++i) out += (i ? ", " : "") + quote(info.warnings[i]);
  return out + "]\n}\n";
}

}  // namespace kumi::launch
