#include "tools/netcheck/report.hpp"

#include <cstdio>
#include <map>

#include "core/strings.hpp"
#include "topology/json_writer.hpp"

namespace kumi::netcheck {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

Labels linkLabels(const LinkKey& k, const std::vector<std::string>& names) {
  return {{"src_node", names[static_cast<std::size_t>(k.src)]},
          {"dst_node", names[static_cast<std::size_t>(k.dst)]},
          {"transport", k.transport},
          {"rail", std::to_string(k.rail)}};
}

}  // namespace

int exitCode(const Analysis& a, const RunInfo& run) {
  if (!run.failure.empty()) return 2;
  return a.healthy() ? 0 : 1;
}

std::vector<MetricFamily> metricFamilies(const Analysis& a, const std::vector<AllreduceRow>& allreduce,
                                         const RunInfo& run) {
  const auto& names = run.nodeNames;
  MetricFamily bw{"kumi_netcheck_p2p_bandwidth_bytes_per_second",
                  "Point-to-point bandwidth from src_node to dst_node, median of the repeats.", "gauge", {}};
  MetricFamily lat{"kumi_netcheck_p2p_latency_seconds", "One-way latency of an 8-byte message, median of the repeats.",
                   "gauge", {}};
  MetricFamily spread{"kumi_netcheck_p2p_bandwidth_spread_ratio",
                      "(p90 - p10) / median of the bandwidth repeats: how steady the link was.", "gauge", {}};
  MetricFamily slow{"kumi_netcheck_p2p_link_degraded",
                    "1 when the link is slower (or slower to answer) than expected, else 0.", "gauge", {}};
  MetricFamily expected{"kumi_netcheck_p2p_expected_bandwidth_bytes_per_second",
                        "What the link was expected to do (baseline, threshold or the best of its peers).", "gauge",
                        {}};
  for (const auto& v : a.links) {
    const Labels l = linkLabels(v.link.key, names);
    bw.samples.push_back({l, v.link.bandwidth});
    if (v.link.latency > 0) lat.samples.push_back({l, v.link.latency});
    spread.samples.push_back({l, v.link.spread});
    slow.samples.push_back({l, v.slow || v.laggy ? 1.0 : 0.0});
    if (v.expected.bandwidth > 0) expected.samples.push_back({l, v.expected.bandwidth});
  }
  MetricFamily busbw{"kumi_netcheck_allreduce_busbw_bytes_per_second",
                     "Allreduce bus bandwidth (nccl-tests' busbw) per algorithm and message size in bytes.", "gauge",
                     {}};
  for (const auto& r : allreduce)
    busbw.samples.push_back({{{"algorithm", r.algorithm}, {"size", std::to_string(r.bytes)}}, r.busbw});
  MetricFamily health{"kumi_netcheck_node_healthy", "1 when no finding names the node, else 0.", "gauge", {}};
  const auto named = a.nodesInFindings(static_cast<int>(names.size()));
  for (std::size_t n = 0; n < names.size(); ++n) health.samples.push_back({{{"node", names[n]}}, named[n] ? 0.0 : 1.0});
  MetricFamily findings{"kumi_netcheck_findings", "Findings of the last run by scope and severity.", "gauge", {}};
  std::map<std::pair<std::string, std::string>, int> counts;
  for (Scope s : {Scope::Node, Scope::Nic, Scope::Rail, Scope::Pair})
    for (Severity v : {Severity::Warning, Severity::Critical}) counts[{scopeName(s), severityName(v)}] = 0;
  for (const auto& f : a.findings) ++counts[{scopeName(f.scope), severityName(f.severity)}];
  for (const auto& [k, c] : counts)
    findings.samples.push_back({{{"scope", k.first}, {"severity", k.second}}, static_cast<double>(c)});
  const int code = exitCode(a, run);
  return {bw,
          lat,
          spread,
          slow,
          expected,
          busbw,
          health,
          findings,
          {"kumi_netcheck_exit_code", "0 healthy, 1 degraded, 2 failed to run.", "gauge", {{{}, double(code)}}},
          {"kumi_netcheck_complete", "1 when every planned measurement ran within the budget.", "gauge",
           {{{}, run.complete ? 1.0 : 0.0}}},
          {"kumi_netcheck_nodes", "Nodes in the run.", "gauge", {{{}, double(names.size())}}},
          {"kumi_netcheck_run_duration_seconds", "Wall time of the measurements.", "gauge", {{{}, run.seconds}}},
          {"kumi_netcheck_last_run_timestamp_seconds", "When the run started (Unix time).", "gauge",
           {{{}, run.startedAt}}}};
}

std::string jsonReport(const Analysis& a, const std::vector<AllreduceRow>& allreduce, const RunInfo& run) {
  topo::JsonWriter j;
  const auto& names = run.nodeNames;
  j.beginObject();
  j.field("tool", "kumi-netcheck").field("version", 1);
  j.field("started_at", run.startedAt).field("seconds", run.seconds).field("ranks", run.ranks);
  j.field("complete", run.complete).field("exit_code", exitCode(a, run));
  if (!run.failure.empty()) j.field("failure", run.failure);
  j.key("notes").beginArray();
  for (const auto& n : run.notes) j.value(n);
  j.endArray();
  j.key("nodes").beginArray();
  for (const auto& n : names) j.value(n);
  j.endArray();
  j.key("links").beginArray();
  for (const auto& v : a.links) {
    const LinkKey& k = v.link.key;
    j.beginObject()
        .field("src_node", names[static_cast<std::size_t>(k.src)])
        .field("dst_node", names[static_cast<std::size_t>(k.dst)])
        .field("rail", k.rail)
        .field("transport", k.transport)
        .field("bandwidth_bytes_per_second", v.link.bandwidth)
        .field("latency_seconds", v.link.latency)
        .field("spread", v.link.spread)
        .field("repeats", v.link.repeats);
    j.key("bandwidth_samples").beginArray();
    for (double x : v.link.samples) j.value(x);
    j.endArray()
        .field("expected_bandwidth_bytes_per_second", v.expected.bandwidth)
        .field("expected_latency_seconds", v.expected.latency)
        .field("expected_from", v.expectedFrom)
        .field("slow", v.slow)
        .field("laggy", v.laggy);
    if (!v.link.error.empty()) j.field("error", v.link.error);
    j.endObject();
  }
  j.endArray();
  j.key("allreduce").beginArray();
  for (const auto& r : allreduce) {
    j.beginObject()
        .field("algorithm", r.algorithm)
        .field("ran", r.ran)
        .field("bytes", r.bytes)
        .field("time_us", r.timeUs)
        .field("busbw_bytes_per_second", r.busbw)
        .key("time_us_samples")
        .beginArray();
    for (double t : r.samplesUs) j.value(t);
    j.endArray().endObject();
  }
  j.endArray();
  j.key("findings").beginArray();
  for (const auto& f : a.findings) {
    j.beginObject().field("scope", scopeName(f.scope)).field("severity", severityName(f.severity));
    if (f.node >= 0) j.field("node", names[static_cast<std::size_t>(f.node)]);
    if (f.peer >= 0) j.field("peer", names[static_cast<std::size_t>(f.peer)]);
    if (f.rail >= 0) j.field("rail", f.rail);
    j.field("summary", f.summary).key("evidence").beginArray();
    for (const auto& e : f.evidence) j.value(e);
    j.endArray().endObject();
  }
  j.endArray();
  j.endObject();
  return j.str() + "\n";
}

std::string textReport(const Analysis& a, const std::vector<AllreduceRow>& allreduce, const RunInfo& run) {
  const auto& names = run.nodeNames;
  std::string out = formatted("# kumi-netcheck: %zu nodes, %d ranks, %.1f s%s\n", names.size(), run.ranks, run.seconds,
                         run.complete ? "" : " (incomplete)");
  for (const auto& n : run.notes) out += "# " + n + "\n";
  out += formatted("# %-20s %-20s %4s %-9s %10s %10s %10s %7s  %s\n", "src", "dst", "rail", "transport", "GB/s", "expected",
              "lat (us)", "spread", "verdict");
  for (const auto& v : a.links) {
    const LinkKey& k = v.link.key;
    const char* verdict = !v.link.error.empty() ? "FAILED" : v.slow ? "SLOW" : v.laggy ? "LAGGY" : "ok";
    out += formatted("  %-20s %-20s %4d %-9s %10.3f %10.3f %10.1f %6.0f%%  %s\n", names[static_cast<std::size_t>(k.src)].c_str(),
                names[static_cast<std::size_t>(k.dst)].c_str(), k.rail, k.transport.c_str(), v.link.bandwidth / 1e9,
                v.expected.bandwidth / 1e9, v.link.latency * 1e6, 100 * v.link.spread, verdict);
  }
  if (!allreduce.empty()) {
    out += formatted("# %-20s %-20s %12s %12s %10s\n", "allreduce algorithm", "ran", "bytes", "time (us)", "busbw GB/s");
    for (const auto& r : allreduce)
      out += formatted("  %-20s %-20s %12llu %12.1f %10.3f\n", r.algorithm.c_str(), r.ran.c_str(),
                  static_cast<unsigned long long>(r.bytes), r.timeUs, r.busbw / 1e9);
  }
  if (a.findings.empty()) out += run.failure.empty() ? "# healthy: no findings\n" : "";
  for (const auto& f : a.findings) {
    out += std::string("# ") + severityName(f.severity) + " (" + scopeName(f.scope) + "): " + f.summary + "\n";
    for (const auto& e : f.evidence) out += "#     " + e + "\n";
  }
  if (!run.failure.empty()) out += "# FAILED: " + run.failure + "\n";
  return out;
}

}  // namespace kumi::netcheck
