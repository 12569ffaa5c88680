#include "tools/netcheck/options.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/env.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi::netcheck {
namespace {

double number(const std::string& flag, const std::string& text, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  KUMI_REQUIRE_ARG(!text.empty() && end && *end == '\0' && errno == 0 && std::isfinite(v) && v >= lo && v <= hi, flag,
                   ": '", text, "' is not a number from ", lo, " to ", hi);
  return v;
}

int integer(const std::string& flag, const std::string& text, int lo, int hi) {
  const double v = number(flag, text, lo, hi);
  KUMI_REQUIRE_ARG(v == std::floor(v), flag, ": '", text, "' is not a whole number");
  return static_cast<int>(v);
}

std::uint64_t bytes(const std::string& flag, const std::string& text) {
  const auto v = parseBytes(text);
  KUMI_REQUIRE_ARG(v && *v > 0, flag, ": '", text, "' is not a size (e.g. 64K, 4M)");
  return *v;
}

}  // namespace

std::vector<std::string> allAllreduceAlgorithms() { return {"ring", "recursive_doubling", "hierarchical", "tree", "rabenseifner"}; }

double parseDuration(const std::string& flag, const std::string& text) {
  double total = 0;
  std::size_t i = 0;
  KUMI_REQUIRE_ARG(!text.empty(), flag, ": empty duration");
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) ++j;
    KUMI_REQUIRE_ARG(j > i, flag, ": '", text, "' is not a duration (e.g. 90s, 5m, 1h, 1m30s)");
    const double v = number(flag, text.substr(i, j - i), 0, 1e7);
    double unit = 1;
    if (j < text.size()) {
      const char u = text[j++];
      if (u == 's') unit = 1;
      else if (u == 'm') unit = 60;
      else if (u == 'h') unit = 3600;
      else fail(kumiInvalidArgument, flag, ": '", text, "': unknown unit '", u, "' (s, m or h)");
    } else {
      KUMI_REQUIRE_ARG(i == 0, flag, ": '", text, "': a number without unit after another part");
    }
    total += v * unit;
    i = j;
  }
  KUMI_REQUIRE_ARG(total > 0, flag, ": the duration must be positive");
  return total;
}

const char* usageText() {
  return "usage: kumi-netcheck [options]      (every rank of a job runs it: kumirun, a Kubernetes job, ...)\n"
         "  Measures every node pair's point-to-point bandwidth and latency (round-robin rounds, every\n"
         "  rail at once), the intra-node link, and allreduce busbw per algorithm; finds slow nodes,\n"
         "  NICs, rails and pairs; exits 0 healthy, 1 degraded, 2 failed to run.\n"
         "  --budget DURATION       stop measuring after this long (default 5m; 90s, 5m, 1h)\n"
         "  --bytes SIZE            point-to-point message size (default 4M)\n"
         "  --messages N            messages per bandwidth sample (default 4)\n"
         "  --repeats N             bandwidth samples per direction (default 5, at most 64)\n"
         "  --latency-iters N       8-byte round trips per direction (default 20)\n"
         "  --allreduce-sizes LIST  allreduce sizes (default 1M,16M; 'none' skips the sweep)\n"
         "  --algos all|LIST        allreduce algorithms forced besides the planner's (default all)\n"
         "  --no-intra-node         skip the intra-node measurement\n"
         "  --rails IF,IF,...       one rank per node: measure each rail in turn over the interface\n"
         "                          named (KUMI_SOCKET_IFNAME syntax, e.g. =net1,=net2)\n"
         "  --baseline FILE         expected values per link (written by --save-baseline)\n"
         "  --save-baseline FILE    write this run's links as the baseline\n"
         "  --threshold T=GBPS[:US] floor on bandwidth (GB/s) and cap on latency (us) for transport T\n"
         "  --min-drop F            fraction below expected that counts as slow (default 0.2)\n"
         "  --latency-floor-us US   a latency finding needs at least this rise too (default 25)\n"
         "  --metrics-file PATH     Prometheus text for node_exporter's textfile collector\n"
         "  --pushgateway URL       push the metrics (http://host:port) under --job and --group\n"
         "  --job NAME              job label for the Pushgateway (default kumi-netcheck)\n"
         "  --group LABEL=VALUE     more grouping labels for the Pushgateway (repeatable)\n"
         "  --json FILE             the full report: every sample and finding\n"
         "  --no-progress           no progress line on a terminal\n"
         "The report table goes to stdout (rank 0); docs/NETCHECK.md explains metrics and findings.\n";
}

Options parseOptions(const std::vector<std::string>& args) {
  Options o;
  o.sweep.algorithms = allAllreduceAlgorithms();
  o.sweep.sizes = {1 << 20, 16 << 20};
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto val = [&]() -> std::string {
      KUMI_REQUIRE_ARG(i + 1 < args.size(), a, " needs a value");
      return args[++i];
    };
    if (a == "-h" || a == "--help") o.help = true;
    else if (a == "--budget") o.budgetSeconds = parseDuration(a, val());
    else if (a == "--bytes") o.p2p.bytes = bytes(a, val());
    else if (a == "--messages") o.p2p.messages = integer(a, val(), 1, 100000);
    else if (a == "--repeats") o.p2p.repeats = integer(a, val(), 1, kMaxRepeats);
    else if (a == "--latency-iters") o.p2p.latencyIters = integer(a, val(), 1, 100000);
    else if (a == "--allreduce-sizes") {
      const std::string v = val();
      o.sweep.sizes.clear();
      if (v != "none")
        for (const auto& s : splitList(v, ',')) o.sweep.sizes.push_back(bytes(a, s));
    } else if (a == "--algos") {
      const std::string v = val();
      o.sweep.algorithms = v == "all" ? allAllreduceAlgorithms() : v == "none" ? std::vector<std::string>{} : splitList(v, ',');
    } else if (a == "--rails") {
      o.railInterfaces = splitList(val(), ',');
      KUMI_REQUIRE_ARG(!o.railInterfaces.empty(), a, ": name at least one interface");
    } else if (a == "--no-intra-node") o.intraNode = false;
    else if (a == "--baseline") o.baseline = val();
    else if (a == "--save-baseline") o.saveBaseline = val();
    else if (a == "--threshold") {
      const std::string v = val();
      const auto eq = v.find('=');
      KUMI_REQUIRE_ARG(eq != std::string::npos && eq > 0, a, ": '", v, "' is not TRANSPORT=GBPS[:LATENCY_US]");
      const std::string transport = v.substr(0, eq), rest = v.substr(eq + 1);
      const auto colon = rest.find(':');
      Expected e;
      e.bandwidth = number(a, rest.substr(0, colon), 0, 1e6) * 1e9;
      if (colon != std::string::npos) e.latency = number(a, rest.substr(colon + 1), 0, 1e9) * 1e-6;
      o.analysis.thresholds[transport] = e;
    } else if (a == "--min-drop") o.analysis.minDrop = number(a, val(), 0.01, 0.99);
    else if (a == "--latency-floor-us") o.analysis.latencyFloor = number(a, val(), 0, 1e7) * 1e-6;
    else if (a == "--metrics-file") o.metricsFile = val();
    else if (a == "--pushgateway") o.pushgateway = val();
    else if (a == "--job") o.job = val();
    else if (a == "--group") {
      const std::string v = val();
      const auto eq = v.find('=');
      KUMI_REQUIRE_ARG(eq != std::string::npos && eq > 0, a, ": '", v, "' is not LABEL=VALUE");
      o.grouping.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--json") o.json = val();
    else if (a == "--no-progress") o.progress = false;
    else fail(kumiInvalidArgument, "unknown argument '", a, "' (--help lists them)");
  }
  KUMI_REQUIRE_ARG(o.job.find('/') == std::string::npos && !o.job.empty(), "--job '", o.job,
                   "' must be a non-empty name without '/'");
  return o;
}

}  // namespace kumi::netcheck
