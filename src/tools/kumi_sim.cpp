// kumi-sim: predicts collective times on a described cluster by running kumi's own schedules
// through the simulator (collectives/simulator.hpp), and prints them in kumi-bench's format with
// one row per size and algorithm.
//   kumi-sim allreduce --cluster benchmarks/clusters/v100-128x8-roce.conf -b 64K -e 1G -f 4
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "collectives/algorithms.hpp"
#include "collectives/cost_planner.hpp"
#include "collectives/link_model.hpp"
#include "collectives/planner.hpp"
#include "collectives/simulator.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace {

using namespace kumi;

struct Options {
  Collective coll = Collective::AllReduce;
  std::string clusterFile;
  int nodes = 0, ranksPerNode = 0;  // overrides
  std::uint64_t minBytes = 8, maxBytes = 64 << 20;
  double factor = 4;
  std::vector<std::string> algos;  // empty: every algorithm of the collective
  std::string transport;           // "tcp": ranks of a node talk over loopback TCP (loopback_* keys)
  int iters = 1, warmup = 0;        // back-to-back calls, timed and not, as kumi-bench's -n and -w
  bool device = false;              // --memory device: calls on device buffers (device_* keys)
};

[[noreturn]] void usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: kumi-sim [allreduce|allgather|reduce_scatter|broadcast|reduce|alltoall] --cluster FILE\n"
               "                [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [--algo A,B,...] [--nodes N] [--ranks-per-node R]\n"
               "                [--transport auto|tcp] [--memory host|device] [-n N] [-w N]\n"
               "  Predicts float32 collective times on the cluster FILE describes (key = value lines: name,\n"
               "  nodes, ranks_per_node, {intra,loopback,nic}_{gbps,latency_us,overhead_us}, nics_per_node,\n"
               "  oversubscription, reduce_gbps, copy_gbps; bandwidths in GB/s). --memory device: calls on GPU\n"
               "  buffers, as the device_* and gpus_per_node keys describe them. A tuning file written by\n"
               "  kumi-bench --calibrate is one too. -n N -w W: the mean time of N calls run back to back after W\n"
               "  untimed ones, as kumi-bench's loop times them (on shaped links the token bucket does not\n"
               "  refill between calls); default -n 1 -w 0, a lone call. See docs/SIMULATOR.md and docs/PLANNER.md.\n");
  std::exit(status);
}

std::uint64_t bytesArg(const std::string& flag, const std::string& text) {
  auto v = parseBytes(text);
  if (!v || *v == 0) fail(kumiInvalidArgument, flag, ": '", text, "' is not a size (e.g. 8, 64K, 1G)");
  return *v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) fail(kumiInvalidArgument, a, " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") usage(0);
    else if (a == "allreduce") o.coll = Collective::AllReduce;
    else if (a == "allgather") o.coll = Collective::AllGather;
    else if (a == "reduce_scatter") o.coll = Collective::ReduceScatter;
    else if (a == "broadcast") o.coll = Collective::Broadcast;
    else if (a == "reduce") o.coll = Collective::Reduce;
    else if (a == "alltoall") o.coll = Collective::AllToAll;
    else if (a == "--cluster") o.clusterFile = val();
    else if (a == "-b") o.minBytes = bytesArg(a, val());
    else if (a == "-e") o.maxBytes = bytesArg(a, val());
    else if (a == "-f") o.factor = std::atof(val().c_str());
    else if (a == "--algo") o.algos = splitList(val(), ',');
    else if (a == "--nodes") o.nodes = std::atoi(val().c_str());
    else if (a == "--ranks-per-node") o.ranksPerNode = std::atoi(val().c_str());
    else if (a == "--transport") o.transport = val();
    else if (a == "--memory") {
      const std::string v = val();
      KUMI_REQUIRE_ARG(v == "host" || v == "device", "--memory must be host or device, got '", v, "'");
      o.device = v == "device";
    }
    else if (a == "-n" || a == "-w") {
      const std::string v = val();
      const int k = std::atoi(v.c_str());
      KUMI_REQUIRE_ARG(!v.empty() && v.size() <= 4 && v.find_first_not_of("0123456789") == std::string::npos &&
                           k >= (a == "-n" ? 1 : 0) && k <= 1000,
                       a, " must be a whole number from ", a == "-n" ? 1 : 0, " to 1000, got '", v, "'");
      (a == "-n" ? o.iters : o.warmup) = k;
    }
    else fail(kumiInvalidArgument, "unknown argument '", a, "' (--help lists them)");
  }
  KUMI_REQUIRE_ARG(!o.clusterFile.empty(), "--cluster FILE is required");
  KUMI_REQUIRE_ARG(o.transport.empty() || o.transport == "auto" || o.transport == "tcp", "--transport must be auto or tcp, got '",
                   o.transport, "'");
  KUMI_REQUIRE_ARG(o.factor > 1, "-f must be > 1");
  KUMI_REQUIRE_ARG(o.minBytes <= o.maxBytes, "-b must be <= -e");
  return o;
}

double busFactor(Collective c, int n) {
  if (c == Collective::AllReduce) return 2.0 * (n - 1) / n;
  if (c == Collective::AllGather || c == Collective::ReduceScatter || c == Collective::AllToAll)
    return static_cast<double>(n - 1) / n;
  return 1;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  LinkModel model = loadLinkModel(o.clusterFile);
  if (o.nodes > 0) model.nodes = o.nodes;
  if (o.ranksPerNode > 0) model.ranksPerNode = o.ranksPerNode;
  const long long ranks = static_cast<long long>(model.nodes) * model.ranksPerNode;
  KUMI_REQUIRE_ARG(ranks >= 1 && ranks <= 65536, "nodes x ranks_per_node must be in [1, 65536], got ", ranks);
  const int n = static_cast<int>(ranks);
  std::vector<int> hostOf;
  for (int r = 0; r < n; ++r) hostOf.push_back(r / model.ranksPerNode);
  const SimCluster sim = clusterFor(model, hostOf, o.transport != "tcp", o.device);
  const bool even = evenHosts(hostOf);
  std::vector<Algorithm> algos;
  const AlgorithmFilter only(o.algos.empty() ? std::string() : [&] {
    std::string s;
    for (const auto& a : o.algos) s += (s.empty() ? "" : ",") + a;
    return s;
  }());
  for (Algorithm a : algorithmsFor(o.coll))
    if (only.allows(o.coll, a)) algos.push_back(a);
  const std::size_t es = 4;
  std::printf("# kumi-sim %s on %s: %d nodes x %d ranks (%d ranks), %s buffers, intra %.3g GB/s %.3g us, %d NIC(s) of "
              "%.3g GB/s %.3g us per node, reduce %.3g GB/s",
              collectiveName(o.coll), sim.name.empty() ? o.clusterFile.c_str() : sim.name.c_str(), model.nodes,
              model.ranksPerNode, n, o.device ? "device" : "host", sim.intra.gbps, sim.intra.latencyUs, sim.nicsPerHost,
              sim.nic.gbps, sim.nic.latencyUs, sim.reduceGbps);
  if (sim.stagingGbps > 0) std::printf(", staging %.3g GB/s", sim.stagingGbps);
  std::printf("\n");
  std::printf("#%12s %12s %6s %20s %12s %9s %9s\n", "size", "count", "type", "algorithm", "time", "algbw", "busbw");
  std::printf("#%12s %12s %6s %20s %12s %9s %9s\n", "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)");
  const double bus = busFactor(o.coll, n);
  for (double bytes = static_cast<double>(o.minBytes); bytes <= static_cast<double>(o.maxBytes); bytes *= o.factor) {
    // Sizes as kumi-bench counts them: allgather the output, reduce_scatter and alltoall the input.
    const bool split =
        o.coll == Collective::AllGather || o.coll == Collective::ReduceScatter || o.coll == Collective::AllToAll;
    std::uint64_t count = static_cast<std::uint64_t>(bytes) / es;
    if (split) count /= static_cast<std::uint64_t>(n);
    if (count == 0) continue;
    for (Algorithm a : algos) {
      if (!canServe(o.coll, a, even)) continue;
      // No step limit: predictions for large worlds are what kumi-sim is for.
      const double seconds = *simulateCall(sim, o.coll, a, count, es, sliceElements(o.coll, a, count, es, n, 0),
                                           std::numeric_limits<std::uint64_t>::max(), o.iters, o.warmup);
      const double shown = static_cast<double>(count * es) * (split ? n : 1);
      const double algbw = shown / seconds / 1e9;
      std::printf(" %12.0f %12llu %6s %20s %12.2f %9.3f %9.3f\n", shown, static_cast<unsigned long long>(count), "float",
                  algorithmName(a), seconds * 1e6, algbw, algbw * bus);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "kumi-sim: %s\n", e.what());
    return 2;
  }
}
