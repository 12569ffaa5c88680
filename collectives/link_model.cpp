#include "collectives/link_model.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi {
namespace {

// Every key the format knows, with where its value goes.
struct Field {
  const char* key;
  double LinkModel::*number = nullptr;
  SimLink LinkModel::*link = nullptr;
  double SimLink::*linkField = nullptr;
};
constexpr Field kFields[] = {
    {"intra_latency_us", nullptr, &LinkModel::intra, &SimLink::latencyUs},
    {"intra_gbps", nullptr, &LinkModel::intra, &SimLink::gbps},
    {"intra_overhead_us", nullptr, &LinkModel::intra, &SimLink::overheadUs},
    {"intra_eager_bytes", &LinkModel::intraEagerBytes},
    {"loopback_latency_us", nullptr, &LinkModel::loopback, &SimLink::latencyUs},
    {"loopback_gbps", nullptr, &LinkModel::loopback, &SimLink::gbps},
    {"loopback_overhead_us", nullptr, &LinkModel::loopback, &SimLink::overheadUs},
    {"nic_latency_us", nullptr, &LinkModel::nic, &SimLink::latencyUs},
    {"nic_gbps", nullptr, &LinkModel::nic, &SimLink::gbps},
    {"nic_overhead_us", nullptr, &LinkModel::nic, &SimLink::overheadUs},
    {"nic_burst_bytes", &LinkModel::nicBurstBytes},
    {"nic_peak_gbps", &LinkModel::nicPeakGbps},
    {"oversubscription", &LinkModel::oversubscription},
    {"reduce_gbps", &LinkModel::reduceGbps},
    {"copy_gbps", &LinkModel::copyGbps},
    {"cache_bytes", &LinkModel::cacheBytes},
    {"cached_reduce_gbps", &LinkModel::cachedReduceGbps},
    {"cached_copy_gbps", &LinkModel::cachedCopyGbps},
    {"device_intra_latency_us", nullptr, &LinkModel::deviceIntra, &SimLink::latencyUs},
    {"device_intra_gbps", nullptr, &LinkModel::deviceIntra, &SimLink::gbps},
    {"device_intra_overhead_us", nullptr, &LinkModel::deviceIntra, &SimLink::overheadUs},
    {"device_reduce_gbps", &LinkModel::deviceReduceGbps},
    {"device_copy_gbps", &LinkModel::deviceCopyGbps},
    {"device_staging_gbps", &LinkModel::deviceStagingGbps},
};

}  // namespace

LinkModel parseLinkModel(const std::string& text, const std::string& source) {
  LinkModel m;
  std::istringstream in(text);
  std::string raw;
  int lineNo = 0;
  while (std::getline(in, raw)) {
    ++lineNo;
    const std::string line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    const auto eq = line.find('=');
    KUMI_REQUIRE_ARG(eq != std::string::npos, source, ":", lineNo, ": expected 'key = value', got '", line, "'");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    // Overheads may be zero; everything else is a rate, a count or a positive time.
    auto number = [&](bool zeroOk) {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      KUMI_REQUIRE_ARG(!value.empty() && end && *end == '\0' && std::isfinite(v) && (v > 0 || (zeroOk && v == 0)),
                       source, ":", lineNo, ": ", key, " must be a ", zeroOk ? "non-negative" : "positive",
                       " number, got '", value, "'");
      return v;
    };
    auto count = [&] {
      const double v = number(false);
      KUMI_REQUIRE_ARG(v == std::floor(v) && v <= 1 << 20, source, ":", lineNo, ": ", key,
                       " must be a whole number up to 1048576, got '", value, "'");
      return static_cast<int>(v);
    };
    if (key == "name") {
      m.name = value;
      continue;
    }
    if (key == "nodes") m.nodes = count();
    else if (key == "ranks_per_node") m.ranksPerNode = count();
    else if (key == "nics_per_node") m.nicsPerHost = count();
    else if (key == "cores_per_node") m.coresPerHost = count();
    else if (key == "gpus_per_node") m.gpusPerHost = count();
    else {
      const Field* f = nullptr;
      for (const Field& c : kFields)
        if (key == c.key) f = &c;
      if (!f) {
        std::string known = "name, nodes, ranks_per_node, nics_per_node, cores_per_node, gpus_per_node";
        for (const Field& c : kFields) known += cat(", ", c.key);
        fail(kumiInvalidArgument, source, ":", lineNo, ": unknown key '", key, "' (known: ", known, ")");
      }
      // Overheads, the optional bucket, the cache and the eager limit (0: not modelled) may be zero.
      const bool overhead = key.ends_with("_overhead_us") || key.starts_with("nic_burst") || key.starts_with("nic_peak") ||
                            key == "cache_bytes" || key == "intra_eager_bytes";
      if (f->number) m.*(f->number) = number(overhead);
      else (m.*(f->link)).*(f->linkField) = number(overhead);
    }
  }
  return m;
}

LinkModel loadLinkModel(const std::string& path) {
  std::ifstream in(path);
  KUMI_REQUIRE_ARG(in.good(), "cannot read '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  return parseLinkModel(text.str(), path);
}

std::string formatLinkModel(const LinkModel& m) {
  std::string s;
  // Seventeen significant digits read back to the same double, so every rank plans alike.
  auto put = [&](const char* key, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    s += cat(key, " = ", buf, "\n");
  };
  for (const Field& f : kFields) put(f.key, f.number ? m.*(f.number) : (m.*(f.link)).*(f.linkField));
  put("nics_per_node", m.nicsPerHost);
  if (m.coresPerHost > 0) put("cores_per_node", m.coresPerHost);
  if (m.gpusPerHost > 0) put("gpus_per_node", m.gpusPerHost);
  put("nodes", m.nodes);
  put("ranks_per_node", m.ranksPerNode);
  if (!m.name.empty()) s += cat("name = ", m.name, "\n");
  return s;
}

SimCluster clusterFor(const LinkModel& m, const std::vector<int>& hostOf, bool sharedMemory, bool device) {
  SimCluster c;
  c.name = m.name;
  c.hostOf = hostOf;
  c.intra = sharedMemory ? m.intra : m.loopback;
  if (sharedMemory) c.intraEagerBytes = m.intraEagerBytes;
  c.nic = m.nic;
  c.nic.gbps /= m.oversubscription;
  c.nicsPerHost = m.nicsPerHost;
  c.nicBurstBytes = m.nicBurstBytes;
  c.nicPeakGbps = m.nicPeakGbps / m.oversubscription;
  c.coresPerHost = m.coresPerHost;
  c.reduceGbps = m.reduceGbps;
  c.copyGbps = m.copyGbps;
  c.cacheBytes = m.cacheBytes;
  c.cachedReduceGbps = m.cachedReduceGbps;
  c.cachedCopyGbps = m.cachedCopyGbps;
  if (device) {
    // The GPUs do the work the host's cores do for host buffers, and contend as the cores do
    // when ranks outnumber them (several processes on one GPU).
    if (sharedMemory) c.intra = m.deviceIntra;
    c.intraEagerBytes = 0;
    c.reduceGbps = m.deviceReduceGbps;
    c.copyGbps = m.deviceCopyGbps;
    c.coresPerHost = m.gpusPerHost;
    c.cacheBytes = 0;
    c.stagingGbps = m.deviceStagingGbps;
    c.stagedInsideHost = !sharedMemory;
  }
  return c;
}

}  // namespace kumi
