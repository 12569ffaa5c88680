// kumi-topo: what kumi sees of a machine (CPUs, NUMA nodes, GPUs, NICs and how close they are),
// and which CPUs KUMI_BIND would give each local rank. Reads this machine, or a recorded one.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/env.hpp"
#include "core/error.hpp"
#include "launch/launch.hpp"
#include "launch/launch_report.hpp"
#include "topology/binding.hpp"
#include "topology/json_writer.hpp"
#include "topology/machine_loader.hpp"
#include "topology/report.hpp"

namespace {

using namespace kumi::topo;

const char kUsage[] =
    "usage: kumi-topo [--json] [--xml FILE | --synthetic DESCRIPTION]\n"
    "                 [--bind-preview LOCAL_SIZE [--bind off|numa|device]]\n"
    "       kumi-topo --launch [--json]\n"
    "Describes this machine as kumi sees it: packages, NUMA nodes, cores, caches, PCI devices,\n"
    "GPUs with their nearest NIC, closest CPUs and links to each other (NVLink, NVSwitch, PCIe),\n"
    "and NICs.\n"
    "  --json                 print JSON instead of text\n"
    "  --xml FILE             read an hwloc XML file (lstopo --of xml) instead of this machine\n"
    "  --synthetic DESC       use an hwloc synthetic topology, e.g. \"pack:2 numa:1 core:8 pu:2\"\n"
    "  --bind-preview N       print the CPUs each of N local ranks would be bound to\n"
    "  --bind MODE            the KUMI_BIND mode to preview (default: KUMI_BIND, which must be set)\n"
    "  --launch               print the launcher detected from this environment (torchrun, Slurm,\n"
    "                         Kubernetes jobs...) and each value with its source (docs/LAUNCH.md)\n"
    "  -h, --help             this text\n"
    "Exit status: 0 done, 1 this machine's topology could not be read, 2 bad arguments\n"
    "(including an unreadable --xml file or an invalid --synthetic description, and with\n"
    "--launch an environment whose variables are malformed or contradict each other).\n";

struct UsageError {
  std::string message;
};

struct Options {
  bool json = false;
  std::optional<std::string> xml;
  std::optional<std::string> synthetic;
  std::optional<int> previewSize;
  std::optional<std::string> bind;
  bool launch = false;
};

int parseLocalSize(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0' || v < 1 || v > 4096)
    throw UsageError{"--bind-preview needs a number of local ranks in [1, 4096], not '" + text + "'"};
  return static_cast<int>(v);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto operand = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError{a + " needs a value"};
      return argv[++i];
    };
    if (a == "--json") o.json = true;
    else if (a == "--xml") o.xml = operand();
    else if (a == "--synthetic") o.synthetic = operand();
    else if (a == "--bind-preview") o.previewSize = parseLocalSize(operand());
    else if (a == "--bind") o.bind = operand();
    else if (a == "--launch") o.launch = true;
    else throw UsageError{"unknown argument '" + a + "'"};
  }
  if (o.xml && o.synthetic) throw UsageError{"--xml and --synthetic are exclusive: pick one machine"};
  if (o.launch && (o.xml || o.synthetic || o.previewSize))
    throw UsageError{"--launch reads the environment, not a machine: it takes only --json"};
  if (o.bind && !o.previewSize) throw UsageError{"--bind only applies to --bind-preview LOCAL_SIZE"};
  return o;
}

BindMode previewMode(const Options& o) {
  try {
    if (o.bind) return parseBindMode(*o.bind, "--bind");
    if (kumi::envString("KUMI_BIND")) return bindModeFromEnv();
  } catch (const kumi::Error& e) {
    throw UsageError{e.what()};
  }
  throw UsageError{"--bind-preview needs --bind off|numa|device (or KUMI_BIND set)"};
}

std::string preview(const Machine& m, int localSize, BindMode mode, bool json) {
  if (!json) {
    std::string out = kumi::cat("KUMI_BIND=", bindModeName(mode), ", ", localSize, " local ranks on ", m.source, "\n");
    for (int r = 0; r < localSize; ++r) out += "  " + planBinding(m, r, localSize, mode).describe() + "\n";
    return out;
  }
  JsonWriter j;
  j.beginObject().field("source", m.source).field("mode", bindModeName(mode)).field("local_size", localSize);
  j.key("ranks").beginArray();
  for (int r = 0; r < localSize; ++r) {
    BindPlan p = planBinding(m, r, localSize, mode);
    j.beginObject().field("local_rank", r).field("mode", bindModeName(p.used));
    j.field("numa_node", p.numaNode).field("gpu", p.gpu).field("cpus", formatCpuList(p.cpus));
    j.field("note", p.note).endObject();
  }
  j.endArray().endObject();
  return j.str();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  Options opt;
  BindMode mode = BindMode::Off;
  try {
    opt = parseArgs(argc, argv);
    if (opt.previewSize) mode = previewMode(opt);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kumi-topo: %s (try --help)\n", e.message.c_str());
    return 2;
  }
  if (opt.launch) {
    try {
      auto info = kumi::launch::detectFromProcess();
      std::fputs((opt.json ? kumi::launch::formatJson(info) : kumi::launch::formatText(info)).c_str(), stdout);
      return 0;
    } catch (const kumi::Error& e) {
      std::fprintf(stderr, "kumi-topo: %s\n", e.what());
      return 2;  // the environment contradicts itself: bad input, like a bad argument
    }
  }
  try {
    Machine m = opt.xml         ? loadMachineFromXml(*opt.xml)
                : opt.synthetic ? loadMachineFromSynthetic(*opt.synthetic)
                                : loadLocalMachine();
    std::string out = opt.previewSize ? preview(m, *opt.previewSize, mode, opt.json)
                      : opt.json      ? formatJson(m)
                                      : formatText(m);
    std::fputs(out.c_str(), stdout);
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "kumi-topo: %s\n", e.what());
    // A fixture that cannot be read is a bad argument; this machine failing to load is not.
    return e.code() == kumiInvalidArgument ? 2 : 1;
  }
  return 0;
}
