// kumi-bench: the bandwidth benchmark, in the format of nccl-tests so that its numbers read the
// same way: size, count, type, redop, root, then time, algbw, busbw and #wrong for out-of-place
// and in-place runs. Run it under kumirun (or any launcher kumi understands):
//
//   kumirun -np 4 -- kumi-bench allreduce -b 8 -e 128M -f 2
//   kumirun -np 4 -- kumi-bench allreduce -b 8 -e 128M -f 4 --algo all   # planner vs each algorithm
//   kumirun -np 4 --nodes 2 -- kumi-bench --calibrate kumi.tuning        # link model for the planner
//
// It uses only the public API, like any application. Exit status 1 if any element was wrong.
#include <kumi/kumi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "device_buffers.hpp"
#include "nccl_peer.hpp"
#include "core/element.hpp"     // header-only: the same fp16/bf16 rounding the library uses
#include "core/scoped_env.hpp"  // header-only
#include "core/types.hpp"       // header-only: canonical type and op names

namespace {

using kumi::ScopedEnv;

struct Options {
  std::string coll = "allreduce";
  std::uint64_t minBytes = 32 << 20, maxBytes = 32 << 20, stepBytes = 0;
  double factor = 0;
  int iters = 20, warmup = 5, check = 1, root = 0;
  std::vector<kumiDataType_t> types = {kumiFloat32};
  std::vector<kumiRedOp_t> ops = {kumiSum};
  std::string json;
  std::string compare;    // --algo all or A,B,...: the planner's choice against each algorithm
  std::string calibrate;  // --calibrate FILE
  bool transportSet = false;
  bool device = false;  // --memory device: buffers in GPU memory, calls on a stream
  bool compareNccl = false;  // --compare nccl: NCCL on the same buffers in the same run
};

// nccl-tests' names for the table; kumi's canonical names (core/types.hpp) for -d and JSON.
const char* kTableTypeNames[] = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "bfloat16", "float", "double"};
using kumi::kOpNames;
using kumi::kTypeNames;

// Each collective's algorithms as the planner lists them (collectives/planner.cpp,
// algorithmsFor): the bench sees only the public API, which has no such list. One the library
// does not know (an older libkumi) is skipped at run time with a note, not a failure.
const std::vector<std::pair<std::string, std::vector<std::string>>> kAlgorithms = {
    {"allreduce", {"ring", "recursive_doubling", "hierarchical", "tree", "rabenseifner"}},
    {"reduce_scatter", {"ring", "rabenseifner"}},
    {"allgather", {"ring", "hierarchical", "recursive_doubling"}},
    {"broadcast", {"chain", "binomial"}},
    {"reduce", {"chain", "binomial"}},
    {"alltoall", {"pairwise"}}};
const std::map<std::string, std::string> kAlgorithmAliases = {{"rd", "recursive_doubling"}, {"rhd", "rabenseifner"}};

[[noreturn]] void die(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "kumi-bench: %s\n", msg.c_str());
  std::exit(code);
}

void check(kumiResult_t r, const char* what) {
  if (r != kumiSuccess) die(std::string(what) + " failed: " + kumiGetLastError(), 2);
}

struct CommDestroy {
  void operator()(kumiComm_t c) const noexcept { kumiCommDestroy(c); }
};
using CommPtr = std::unique_ptr<kumiComm, CommDestroy>;

CommPtr initComm() {
  kumiComm_t c = nullptr;
  check(kumiCommInitFromEnv(&c), "kumiCommInitFromEnv");
  return CommPtr(c);
}

// What the communicator's last operation ran; "?" where the library does not say.
std::string algorithmRan(kumiComm_t c) {
  const char* name = nullptr;
  check(kumiCommGetAlgorithm(c, &name), "kumiCommGetAlgorithm");
  return name && *name ? name : "?";
}

std::uint64_t parseSize(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || v < 0) die("bad size '" + s + "'");
  std::uint64_t mult = 1;
  switch (*end) {
    case 'K': case 'k': mult = 1ull << 10; break;
    case 'M': case 'm': mult = 1ull << 20; break;
    case 'G': case 'g': mult = 1ull << 30; break;
    case '\0': break;
    default: die("bad size '" + s + "'");
  }
  return static_cast<std::uint64_t>(v * static_cast<double>(mult));
}

void usage() {
  std::printf(
      "usage: kumi-bench [allreduce|reduce_scatter|allgather|broadcast|reduce|alltoall] [options]\n"
      "       kumi-bench --calibrate FILE [-n N] [-w N]   (under kumirun, 2 ranks or more)\n"
      "  -b, --minbytes SIZE   smallest size (default 32M); K/M/G suffixes\n"
      "  -e, --maxbytes SIZE   largest size (default 32M)\n"
      "  -i, --stepbytes SIZE  increment between sizes\n"
      "  -f, --stepfactor F    multiplication factor between sizes\n"
      "  -n, --iters N         timed iterations (default 20)\n"
      "  -w, --warmup_iters N  warm-up iterations (default 5)\n"
      "  -c, --check 0|1       check results (default 1)\n"
      "  -o, --op OP           sum, prod, min, max, avg, or all\n"
      "  -d, --datatype T      int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double, or all\n"
      "  -r, --root R          root of broadcast and reduce\n"
      "      --algo SPEC       force the algorithm (sets KUMI_ALGO, NCCL syntax)\n"
      "      --algo all|A,B    compare: time the planner's choice (auto) and each algorithm forced in turn\n"
      "                        at every size, then print the best per size and auto/best\n"
      "      --transport NAME  auto (shared memory within a host, RDMA or tcp between), tcp, or ib (RDMA\n"
      "                        to every peer) (sets KUMI_TRANSPORT)\n"
      "      --memory host|device  where the buffers live (default host); device: cudaMalloc'd buffers on\n"
      "                        the current GPU, every call on a stream, timed until the stream is done\n"
      "      --compare nccl    also run NCCL (libnccl.so.2, opened at run time) on the same device buffers,\n"
      "                        sizes, ranks and stream, and print kumi/NCCL busbw per size (needs --memory\n"
      "                        device; NCCL refuses two ranks on one GPU, which is then said and skipped)\n"
      "      --json FILE       also write the results as JSON\n"
      "      --calibrate FILE  measure rank 0's links (shared memory, loopback tcp, tcp to another host),\n"
      "                        memcpy and float32 sum; write them as a tuning file (KUMI_TUNING_FILE);\n"
      "                        -n N: 10N ping-pongs and max(3, N/4) streaming runs per size\n"
      "Sizes are total bytes as in nccl-tests (allgather: the gathered output; reduce_scatter and alltoall:\n"
      "the input). alltoall has no in-place form: its in-place columns read N/A.\n");
}

Options parseArgs(int argc, char** argv) {
  Options o;
  std::map<std::string, std::string> alias = {
      {"--minbytes", "-b"}, {"--maxbytes", "-e"}, {"--stepbytes", "-i"}, {"--stepfactor", "-f"}, {"--iters", "-n"},
      {"--warmup_iters", "-w"}, {"--check", "-c"}, {"--op", "-o"}, {"--datatype", "-d"}, {"--root", "-r"}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (alias.count(a)) a = alias[a];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") { usage(); std::exit(0); }
    else if (a == "-b") o.minBytes = parseSize(val());
    else if (a == "-e") o.maxBytes = parseSize(val());
    else if (a == "-i") o.stepBytes = parseSize(val());
    else if (a == "-f") o.factor = std::atof(val().c_str());
    else if (a == "-n") o.iters = std::atoi(val().c_str());
    else if (a == "-w") o.warmup = std::atoi(val().c_str());
    else if (a == "-c") o.check = std::atoi(val().c_str());
    else if (a == "-r") o.root = std::atoi(val().c_str());
    else if (a == "--json") o.json = val();
    else if (a == "--memory") {
      const std::string v = val();
      if (v != "host" && v != "device") die("--memory " + v + ": expected host or device");
      o.device = v == "device";
    }
    else if (a == "--compare") {
      const std::string v = val();
      if (v != "nccl") die("--compare " + v + ": the peer kumi-bench can run beside kumi is nccl");
      o.compareNccl = true;
    }
    else if (a == "--calibrate") {
      o.calibrate = val();
      if (o.calibrate.empty()) die("--calibrate needs a file name");
    } else if (a == "--algo") {
      // "all", or several plain names, compares them; one name, or NCCL syntax (':', ';', '^'),
      // restricts the planner as KUMI_ALGO does, as this option always has.
      std::string v = val();
      if (v == "all" || (v.find(',') != std::string::npos && v.find_first_of(":;^") == std::string::npos)) o.compare = v;
      else setenv("KUMI_ALGO", v.c_str(), 1);
    } else if (a == "--transport") {
      setenv("KUMI_TRANSPORT", val().c_str(), 1);
      o.transportSet = true;
    } else if (a == "-d") {
      std::string v = val();
      o.types.clear();
      for (int t = 0; t < kumiNumTypes; ++t)
        if (v == "all" || v == kTableTypeNames[t] || v == kTypeNames[t]) o.types.push_back(static_cast<kumiDataType_t>(t));
      if (o.types.empty()) die("unknown data type '" + v + "'");
    } else if (a == "-o") {
      std::string v = val();
      o.ops.clear();
      for (int p = 0; p < kumiNumOps; ++p)
        if (v == "all" || v == kOpNames[p]) o.ops.push_back(static_cast<kumiRedOp_t>(p));
      if (o.ops.empty()) die("unknown op '" + v + "'");
    } else if (!a.empty() && a[0] != '-') {
      o.coll = a;
    } else {
      die("unknown option " + a + " (try --help)");
    }
  }
  const std::vector<std::string> known = {"allreduce", "reduce_scatter", "allgather",
                                          "broadcast", "reduce",         "alltoall"};
  if (std::find(known.begin(), known.end(), o.coll) == known.end()) die("unknown collective '" + o.coll + "'");
  if (o.iters < 1 || o.warmup < 0) die("-n must be >= 1 and -w >= 0");
  if (o.maxBytes < o.minBytes) die("-e must be >= -b");
  if (o.factor != 0 && o.factor <= 1) die("-f must be > 1");
  if (!o.calibrate.empty() && !o.compare.empty()) die("--calibrate and --algo " + o.compare + " do not go together");
  if (!o.calibrate.empty() && o.device) die("--calibrate measures host links: drop --memory device");
  if (o.compareNccl && !o.device) die("--compare nccl: NCCL works on device buffers; add --memory device");
  if (o.compareNccl && !o.calibrate.empty()) die("--calibrate and --compare nccl do not go together");
  if (!o.calibrate.empty() && o.transportSet)
    die("--calibrate measures shared memory and tcp itself: drop --transport");
  return o;
}

// The algorithms --algo all|A,B,... names for the collective, in the planner's order for "all".
// Checked before any rendezvous, so that a typo fails at once on every rank alike.
std::vector<std::string> compareList(const Options& o) {
  if (o.compare.empty()) return {};
  const auto own = std::find_if(kAlgorithms.begin(), kAlgorithms.end(), [&](const auto& e) { return e.first == o.coll; });
  const std::vector<std::string>& names = own->second;
  if (o.compare == "all") return names;
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= o.compare.size()) {
    std::size_t comma = o.compare.find(',', start);
    if (comma == std::string::npos) comma = o.compare.size();
    std::string name = o.compare.substr(start, comma - start);
    start = comma + 1;
    if (auto a = kAlgorithmAliases.find(name); a != kAlgorithmAliases.end()) name = a->second;
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      die("--algo " + o.compare + ": '" + name + "' is not an algorithm of " + o.coll + " (" + list + ", or all)");
    }
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;  // names never hold control characters
    out += c;
  }
  return out + "\"";
}

// Test data: small integers so that every reduction is exact in every type and order.
// Products use 1 and 2 only, so they stay exact (powers of two) and small.
double valueOf(int rank, std::uint64_t i, kumiRedOp_t op) {
  if (op == kumiProd) return static_cast<double>(1 + ((static_cast<std::uint64_t>(rank) * 3 + i) % 7 == 0));
  return static_cast<double>((static_cast<std::uint64_t>(rank) * 7 + i * 13) % 8 + 1);
}

// The expected reduction over ranks of element i, as the type would hold it.
double expectedReduce(kumiDataType_t t, kumiRedOp_t op, int nranks, std::uint64_t i) {
  double acc = valueOf(0, i, op);
  for (int r = 1; r < nranks; ++r) {
    double v = valueOf(r, i, op);
    switch (op) {
      case kumiProd: acc *= v; break;
      case kumiMin: acc = std::min(acc, v); break;
      case kumiMax: acc = std::max(acc, v); break;
      default: acc += v; break;
    }
  }
  if (op == kumiAvg) {
    const bool integer = t <= kumiUint64;
    acc = integer ? std::trunc(acc / nranks) : acc / nranks;
    if (t == kumiFloat32 || t == kumiFloat16 || t == kumiBfloat16) acc = static_cast<float>(acc);
  }
  return kumi::roundToType(t, acc);  // as the type holds it, so the comparison is exact
}

struct Coll {
  int nranks, rank;
  std::string name;
  // Elements in the send and receive buffers for a size in bytes of `count` elements total.
  bool reduces() const { return name == "allreduce" || name == "reduce_scatter" || name == "reduce"; }
  double busFactor() const {
    if (name == "allreduce") return 2.0 * (nranks - 1) / nranks;
    // alltoall as nccl-tests counts it: each rank keeps 1/n of its data.
    if (name == "allgather" || name == "reduce_scatter" || name == "alltoall")
      return static_cast<double>(nranks - 1) / nranks;
    return 1.0;
  }
  bool hasInPlace() const { return name != "alltoall"; }  // kumiAllToAll refuses it
};

struct Result {
  double timeUs = 0;
  std::uint64_t wrong = 0;
};

// One communicator the sizes are timed on: the planner's own ("auto", or as KUMI_ALGO restricts
// it outside comparisons) or one with a single algorithm forced.
struct Variant {
  std::string label;
  kumiComm_t comm = nullptr;
  CommPtr owned;  // null for the main communicator, which main() owns
  bench::NcclPeer* nccl = nullptr;  // set for NCCL's row (comm is then the main one, for barriers)
};

// One size of a comparison: the time of each variant (the lower of out of place and in place:
// both run the same algorithm, and the lower is the steadier on a busy machine) and what ran.
struct SizeRow {
  std::uint64_t bytes;
  kumiDataType_t type;
  kumiRedOp_t op;
  std::vector<double> timeUs;
  std::vector<std::string> ran;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) m = (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))) / 2;
  return m;
}

double elapsedUs(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

int runBench(Options& opt, const std::vector<std::string>& algos, kumiComm_t comm, int rank, int nranks) {
  Coll coll{nranks, rank, opt.coll};
  if ((coll.name == "broadcast" || coll.name == "reduce") && (opt.root < 0 || opt.root >= nranks))
    die("root " + std::to_string(opt.root) + " is not a rank (world size " + std::to_string(nranks) + ")");
  const bool rooted = coll.name == "broadcast" || coll.name == "reduce";
  if (!coll.reduces()) opt.ops = {kumiSum};
  const bool comparing = !opt.compare.empty() || opt.compareNccl;

  auto maxOverRanks = [&](double v) {
    double out = 0;
    check(kumiAllReduce(&v, &out, 1, kumiFloat64, kumiMax, comm, nullptr), "allreduce(max)");
    return out;
  };
  auto sumOverRanks = [&](std::uint64_t v) {
    std::uint64_t out = 0;
    check(kumiAllReduce(&v, &out, 1, kumiUint64, kumiSum, comm, nullptr), "allreduce(sum)");
    return out;
  };

  std::vector<Variant> variants;
  const char* spec = std::getenv("KUMI_ALGO");
  variants.push_back({comparing || !spec || !*spec ? "auto" : spec, comm, nullptr});
  std::string skipped;
  for (const std::string& name : algos) {
    const std::string forced = coll.name + ":" + name;
    ScopedEnv env("KUMI_ALGO", forced.c_str());
    kumiComm_t c = nullptr;
    kumiResult_t r = kumiCommInitFromEnv(&c);
    // Every rank parses the same KUMI_ALGO, so every rank refuses the same name, together.
    if (r == kumiInvalidArgument && std::strstr(kumiGetLastError(), "KUMI_ALGO")) {
      skipped += "# skipped " + name + ": " + kumiGetLastError() + "\n";
      continue;
    }
    check(r, ("kumiCommInitFromEnv with KUMI_ALGO=" + forced).c_str());
    variants.push_back({name, c, CommPtr(c)});
  }
  std::unique_ptr<bench::NcclPeer> nccl;
  std::string ncclNote;
  if (opt.compareNccl) {
    std::string why;
    try {
      nccl = bench::NcclPeer::open(comm, rank, nranks, &why);
    } catch (const std::exception& e) {
      die(e.what());
    }
    if (nccl) variants.push_back({"nccl", comm, nullptr, nccl.get()});
    ncclNote = nccl ? "# NCCL " + nccl->version() + " on the same buffers and stream (row nccl)\n"
                    : "# NCCL not compared: " + why + "\n";
  }

  if (rank == 0) {
    std::printf("# kumi-bench %s: %d ranks, %d warm-up and %d timed iterations, check %s\n", coll.name.c_str(), nranks,
                opt.warmup, opt.iters, opt.check ? "on" : "off");
    if (!opt.compare.empty()) {
      std::printf("# comparing the planner's choice (auto) with");
      for (std::size_t v = 1; v < variants.size() - (nccl ? 1 : 0); ++v) std::printf("%s %s", v > 1 ? "," : "", variants[v].label.c_str());
      std::printf(" (KUMI_ALGO=%s:<algo>, one communicator each); ran = what the library reports it ran\n",
                  coll.name.c_str());
      std::fputs(skipped.c_str(), stdout);
    }
    std::fputs(ncclNote.c_str(), stdout);
    // The algorithm columns come only in comparisons, so that plain runs keep nccl-tests' columns.
    auto header = [&](const char* a, const char* b, const char* c, const char* d, const char* e, const char* al,
                      const char* ra, const char* rest) {
      std::printf("# %10s %12s %8s %6s %6s", a, b, c, d, e);
      if (comparing) std::printf(" %18s %18s", al, ra);
      std::printf("%s\n", rest);
    };
    char rest[3][160];
    std::snprintf(rest[0], sizeof rest[0], " %9s %7s %7s %6s %9s %7s %7s %6s", "out-of-place", "", "", "", "in-place", "",
                  "", "");
    std::snprintf(rest[1], sizeof rest[1], " %9s %7s %7s %6s %9s %7s %7s %6s", "time", "algbw", "busbw", "#wrong", "time",
                  "algbw", "busbw", "#wrong");
    std::snprintf(rest[2], sizeof rest[2], " %9s %7s %7s %6s %9s %7s %7s %6s", "(us)", "(GB/s)", "(GB/s)", "", "(us)",
                  "(GB/s)", "(GB/s)", "");
    std::printf("#\n");
    header("", "", "", "", "", "", "", rest[0]);
    header("size", "count", "type", "redop", "root", "algo", "ran", rest[1]);
    header("(B)", "(elements)", "", "", "", "", "", rest[2]);
  }

  std::string jsonRows;
  std::vector<SizeRow> sizeRows;
  double busSum = 0;
  int busCount = 0;
  std::uint64_t totalWrong = 0;
  std::vector<std::byte> sendBuf, recvBuf;  // device mode: filled and checked here, copied across
  std::unique_ptr<bench::DeviceBuffers> dev;
  if (opt.device) {
    try {
      dev = std::make_unique<bench::DeviceBuffers>();
    } catch (const std::exception& e) {
      die(e.what());
    }
    if (rank == 0) std::printf("# buffers in device memory (%s), calls on a stream\n", dev->deviceName().c_str());
  }

  for (kumiDataType_t type : opt.types)
    for (kumiRedOp_t op : opt.ops) {
      const std::uint64_t es = kumiTypeSize(type);
      for (std::uint64_t bytes = opt.minBytes; bytes <= opt.maxBytes;) {
        // count = elements of the whole buffer as nccl-tests prints it; per-rank block for
        // allgather and reduce_scatter.
        std::uint64_t count = bytes / es;
        const bool split = coll.name == "allgather" || coll.name == "reduce_scatter" || coll.name == "alltoall";
        if (split) count -= count % static_cast<std::uint64_t>(nranks);
        const std::uint64_t block = split ? count / static_cast<std::uint64_t>(nranks) : count;
        const std::uint64_t sendElems = coll.name == "allgather" ? block : count;
        const std::uint64_t recvElems = coll.name == "reduce_scatter" ? block : count;
        sendBuf.assign(sendElems * es, std::byte{0});
        recvBuf.assign(recvElems * es, std::byte{0});
        if (dev) dev->reserve(sendBuf.size(), recvBuf.size());
        const std::uint64_t shownBytes = count * es;
        SizeRow sizeRow{shownBytes, type, op, {}, {}};
        for (const Variant& variant : variants) {
          Result res[2];
          std::string ran[2];
          const int passes = coll.hasInPlace() ? 2 : 1;
          for (int inPlace = 0; inPlace < passes; ++inPlace) {
            std::byte* recv = recvBuf.data();
            const std::byte* send = sendBuf.data();
            std::byte* fillBase = sendBuf.data();  // where this rank's input lives
            if (inPlace) {
              if (coll.name == "allgather") {
                send = recvBuf.data() + static_cast<std::uint64_t>(rank) * block * es;
                fillBase = const_cast<std::byte*>(send);
              } else if (coll.name == "reduce_scatter") {
                recv = sendBuf.data() + static_cast<std::uint64_t>(rank) * block * es;
              } else {
                send = recv;
                fillBase = recv;
              }
            }
            // Device mode: the same layout in the device buffers; the host ones hold inputs and results.
            auto onDevice = [&](const std::byte* p) -> std::byte* {
              if (p >= recvBuf.data() && p <= recvBuf.data() + recvBuf.size()) return dev->recv() + (p - recvBuf.data());
              return dev->send() + (p - sendBuf.data());
            };
            const std::byte* hostRecv = recv;
            if (dev) {
              send = onDevice(send);
              recv = onDevice(recv);
            }
            void* const stream = dev ? dev->stream() : nullptr;
            auto toDevice = [&] {
              if (!dev) return;
              dev->toDevice(dev->send(), sendBuf.data(), sendBuf.size());
              dev->toDevice(dev->recv(), recvBuf.data(), recvBuf.size());
            };
            auto launch = [&]() {
              if (variant.nccl) {
                try {
                  const std::uint64_t n = coll.name == "reduce_scatter" || coll.name == "allgather" ||
                                                  coll.name == "alltoall" ? block : count;
                  variant.nccl->run(coll.name, send, recv, n, type, op, opt.root, stream);
                } catch (const std::exception& e) {
                  die(e.what());
                }
                return;
              }
              kumiComm_t c = variant.comm;
              kumiResult_t r = kumiSuccess;
              if (coll.name == "allreduce") r = kumiAllReduce(send, recv, count, type, op, c, stream);
              else if (coll.name == "reduce_scatter") r = kumiReduceScatter(send, recv, block, type, op, c, stream);
              else if (coll.name == "allgather") r = kumiAllGather(send, recv, block, type, c, stream);
              else if (coll.name == "alltoall") r = kumiAllToAll(send, recv, block, type, c, stream);
              else if (coll.name == "broadcast") r = kumiBroadcast(send, recv, count, type, opt.root, c, stream);
              else r = kumiReduce(send, recv, count, type, op, opt.root, c, stream);
              check(r, coll.name.c_str());
            };
            auto fill = [&]() {
              for (std::uint64_t i = 0; i < sendElems; ++i) kumi::storeElement(type, fillBase, i, valueOf(rank, i, op));
            };
            std::uint64_t wrong = 0;
            if (opt.check) {
              fill();
              if (!inPlace) std::fill(recvBuf.begin(), recvBuf.end(), std::byte{0xA5});  // stale data must not pass
              toDevice();
              launch();
              if (dev) {  // the stream is done once the call is: then read everything back
                dev->synchronize();
                dev->toHost(sendBuf.data(), dev->send(), sendBuf.size());
                dev->toHost(recvBuf.data(), dev->recv(), recvBuf.size());
              }
              const bool checkHere = !(coll.name == "reduce" && rank != opt.root);
              if (checkHere) {
                for (std::uint64_t i = 0; i < recvElems; ++i) {
                  double want;
                  if (coll.name == "allreduce" || coll.name == "reduce") want = expectedReduce(type, op, nranks, i);
                  else if (coll.name == "reduce_scatter")
                    want = expectedReduce(type, op, nranks, static_cast<std::uint64_t>(rank) * block + i);
                  else if (coll.name == "allgather")
                    want = kumi::roundToType(type, valueOf(static_cast<int>(i / block), i % block, op));
                  else if (coll.name == "alltoall")  // block j: block `rank` of rank j's input
                    want = kumi::roundToType(type, valueOf(static_cast<int>(i / block),
                                                           static_cast<std::uint64_t>(rank) * block + i % block, op));
                  else
                    want = kumi::roundToType(type, valueOf(opt.root, i, op));
                  if (kumi::loadElement(type, hostRecv, i) != want) ++wrong;
                }
              }
              wrong = sumOverRanks(wrong);
            }
            if (!opt.check) {
              fill();
              toDevice();
            }
            for (int w = 0; w < opt.warmup; ++w) launch();
            if (dev) dev->synchronize();
            check(kumiBarrier(variant.comm, nullptr), "barrier");
            auto t0 = std::chrono::steady_clock::now();
            for (int it = 0; it < opt.iters; ++it) launch();
            if (dev) dev->synchronize();  // device calls return at once: the time is the stream's
            const double us = elapsedUs(t0) / opt.iters;
            // Before any other call on this communicator: the last operation is the timed one.
            ran[inPlace] = variant.nccl ? "nccl" : algorithmRan(variant.comm);
            res[inPlace] = {maxOverRanks(us), wrong};
          }
          const std::string ranShown = passes == 1 || ran[0] == ran[1] ? ran[0] : ran[0] + "/" + ran[1];
          sizeRow.timeUs.push_back(passes == 1 ? res[0].timeUs : std::min(res[0].timeUs, res[1].timeUs));
          sizeRow.ran.push_back(ranShown);
          if (rank == 0) {
            double alg[2] = {}, bus[2] = {};
            for (int k = 0; k < passes; ++k) {
              alg[k] = static_cast<double>(shownBytes) / 1e3 / res[k].timeUs;  // bytes/us/1e3 = GB/s
              bus[k] = alg[k] * coll.busFactor();
            }
            std::printf("  %10llu %12llu %8s %6s %6d", static_cast<unsigned long long>(shownBytes),
                        static_cast<unsigned long long>(count), kTableTypeNames[type], coll.reduces() ? kOpNames[op] : "none",
                        rooted ? opt.root : -1);
            if (comparing) std::printf(" %18s %18s", variant.label.c_str(), ranShown.c_str());
            std::printf(" %9.2f %7.2f %7.2f %6llu", res[0].timeUs, alg[0], bus[0],
                        static_cast<unsigned long long>(res[0].wrong));
            if (passes == 2)
              std::printf(" %9.2f %7.2f %7.2f %6llu\n", res[1].timeUs, alg[1], bus[1],
                          static_cast<unsigned long long>(res[1].wrong));
            else
              std::printf(" %9s %7s %7s %6s\n", "N/A", "N/A", "N/A", "N/A");
            std::fflush(stdout);
            for (int k = 0; k < passes; ++k) {
              busSum += bus[k];
              ++busCount;
            }
            for (int k = 0; k < passes; ++k) {
              char row[512];
              std::snprintf(row, sizeof row,
                            "{\"bytes\": %llu, \"count\": %llu, \"type\": \"%s\", \"op\": \"%s\", \"inplace\": %s, "
                            "\"time_us\": %.3f, \"algbw_GBps\": %.4f, \"busbw_GBps\": %.4f, \"wrong\": %llu, ",
                            static_cast<unsigned long long>(shownBytes), static_cast<unsigned long long>(count),
                            kTypeNames[type], kOpNames[op], k ? "true" : "false", res[k].timeUs, alg[k], bus[k],
                            static_cast<unsigned long long>(res[k].wrong));
              jsonRows += (jsonRows.empty() ? "    " : ",\n    ") + std::string(row) + "\"algo\": " +
                          jsonString(variant.label) + ", \"ran\": " + jsonString(ran[k]) + "}";
            }
          }
          totalWrong += res[0].wrong + res[1].wrong;
        }
        sizeRows.push_back(std::move(sizeRow));
        std::uint64_t next = opt.factor > 1 ? static_cast<std::uint64_t>(static_cast<double>(bytes) * opt.factor)
                             : opt.stepBytes ? bytes + opt.stepBytes : opt.maxBytes + 1;
        if (next <= bytes) next = bytes + 1;
        bytes = next;
      }
    }

  // Peak resident memory of this process, beside the two user buffers of the largest size.
  long peakKb = 0;
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmHWM:", 0) == 0) peakKb = std::atol(line.c_str() + 6);
  }
  double peakMb = maxOverRanks(static_cast<double>(peakKb) / 1024.0);
  if (rank == 0) {
    std::printf("# Out of bounds values : %llu %s\n", static_cast<unsigned long long>(totalWrong), totalWrong ? "FAILED" : "OK");
    std::printf("# Avg bus bandwidth    : %.4f\n", busCount ? busSum / busCount : 0.0);
    std::printf("# Peak resident memory : %.1f MiB per rank (max over ranks), user buffers included\n", peakMb);
    std::string jsonSummary;
    double worst = 0;
    const SizeRow* worstRow = nullptr;
    // kumi's own variants first; NCCL's row, when there is one, last and outside the algorithm summary.
    const std::size_t ours = variants.size() - (nccl ? 1 : 0);
    if (comparing && ours > 1) {
      std::printf("#\n# Algorithm summary (time: the lower of out-of-place and in-place; ratio: auto / best)\n");
      std::printf("# %10s %8s %6s %24s %9s %18s %9s %7s\n", "size", "type", "redop", "best", "time(us)", "auto ran",
                  "time(us)", "ratio");
      for (const SizeRow& s : sizeRows) {
        std::size_t best = 1;
        for (std::size_t v = 2; v < ours; ++v)
          if (s.timeUs[v] < s.timeUs[best]) best = v;
        const double ratio = s.timeUs[0] / s.timeUs[best];
        if (!worstRow || ratio > worst) {
          worst = ratio;
          worstRow = &s;
        }
        // A forced algorithm that could not serve shows what the library ran instead.
        const std::string bestShown =
            variants[best].label + (s.ran[best] == variants[best].label ? "" : "->" + s.ran[best]);
        std::printf("# %10llu %8s %6s %24s %9.2f %18s %9.2f %7.3f\n", static_cast<unsigned long long>(s.bytes),
                    kTableTypeNames[s.type], coll.reduces() ? kOpNames[s.op] : "none", bestShown.c_str(),
                    s.timeUs[best], s.ran[0].c_str(), s.timeUs[0], ratio);
        char row[512];
        std::snprintf(row, sizeof row,
                      "{\"bytes\": %llu, \"type\": \"%s\", \"op\": \"%s\", \"best\": %s, \"best_ran\": %s, "
                      "\"best_time_us\": %.3f, \"auto_ran\": %s, \"auto_time_us\": %.3f, \"ratio\": %.4f}",
                      static_cast<unsigned long long>(s.bytes), kTypeNames[s.type], kOpNames[s.op],
                      jsonString(variants[best].label).c_str(), jsonString(s.ran[best]).c_str(), s.timeUs[best],
                      jsonString(s.ran[0]).c_str(), s.timeUs[0], ratio);
        jsonSummary += (jsonSummary.empty() ? "    " : ",\n    ") + std::string(row);
      }
      if (worstRow)
        std::printf("# Worst auto/best ratio : %.3f at %llu B (%s %s)\n", worst,
                    static_cast<unsigned long long>(worstRow->bytes), kTableTypeNames[worstRow->type],
                    coll.reduces() ? kOpNames[worstRow->op] : "none");
    }
    std::string jsonNccl;
    if (nccl) {
      std::printf("#\n# kumi vs NCCL %s (time: the lower of out-of-place and in-place; ratio: NCCL time / kumi time,\n"
                  "# = kumi busbw / NCCL busbw: above 1, kumi is faster)\n", nccl->version().c_str());
      std::printf("# %10s %8s %6s %12s %12s %7s\n", "size", "type", "redop", "kumi(us)", "nccl(us)", "ratio");
      for (const SizeRow& s : sizeRows) {
        const double ratio = s.timeUs.back() / s.timeUs[0];
        std::printf("# %10llu %8s %6s %12.2f %12.2f %7.3f\n", static_cast<unsigned long long>(s.bytes),
                    kTableTypeNames[s.type], coll.reduces() ? kOpNames[s.op] : "none", s.timeUs[0], s.timeUs.back(),
                    ratio);
        char row[256];
        std::snprintf(row, sizeof row,
                      "{\"bytes\": %llu, \"type\": \"%s\", \"op\": \"%s\", \"kumi_time_us\": %.3f, "
                      "\"nccl_time_us\": %.3f, \"ratio\": %.4f}",
                      static_cast<unsigned long long>(s.bytes), kTypeNames[s.type], kOpNames[s.op], s.timeUs[0],
                      s.timeUs.back(), ratio);
        jsonNccl += (jsonNccl.empty() ? "    " : ",\n    ") + std::string(row);
      }
    }
    if (!opt.json.empty()) {
      std::ofstream out(opt.json);
      out << "{\n  \"tool\": \"kumi-bench\", \"library\": \"kumi\", \"collective\": \"" << coll.name << "\", \"nranks\": "
          << nranks << ",\n  \"dtype\": \"" << (opt.types.size() == 1 ? kTypeNames[opt.types[0]] : "mixed")
          << "\", \"op\": \"" << (opt.ops.size() == 1 ? kOpNames[opt.ops[0]] : "mixed") << "\", \"peak_rss_mib\": " << peakMb;
      if (comparing) {
        out << ",\n  \"algorithms\": [";
        for (std::size_t v = 0; v < variants.size(); ++v) out << (v ? ", " : "") << jsonString(variants[v].label);
        out << "]";
      }
      out << ",\n  \"results\": [\n" << jsonRows << "\n  ]";
      if (comparing && worstRow) {
        char worstText[32];
        std::snprintf(worstText, sizeof worstText, "%.4f", worst);
        out << ",\n  \"summary\": [\n" << jsonSummary << "\n  ],\n  \"worst_ratio\": " << worstText;
      }
      if (nccl) out << ",\n  \"nccl_version\": " << jsonString(nccl->version()) << ",\n  \"nccl\": [\n" << jsonNccl << "\n  ]";
      out << "\n}\n";
      out.close();
      if (!out) die("cannot write " + opt.json);
    }
  }
  // Forced communicators first, in creation order on every rank; then main() destroys its own.
  for (Variant& v : variants)
    if (v.owned) check(kumiCommDestroy(v.owned.release()), "kumiCommDestroy");
  return totalWrong ? 1 : 0;
}

// ---- --calibrate ----------------------------------------------------------------------------

// Keeps the compiler from dropping a copy or a sum whose result is never read.
void clobber(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

struct Link {
  bool measured = false;
  int peer = -1;
  double oneWayUs = 0;     // half the median 8-byte round trip
  double overheadUs = 0;   // fitted per-message cost
  double gbps = 0;         // fitted streaming bandwidth
  double latencyUs = 0;    // what the file says: one way less the per-message overhead
  bool slopeFallback = false;  // the fit had no positive slope; gbps is the largest size's rate
  std::vector<std::pair<double, double>> perMessage;  // (bytes, median us per message)
};

constexpr std::uint64_t kStreamSizes[] = {4 << 10, 64 << 10, 1 << 20, 4 << 20};

// Messages per streaming run: enough that the closing ack is a small part of the run, few
// enough that the 4M runs stay short.
int streamMessages(std::uint64_t bytes) {
  return static_cast<int>(std::clamp<std::uint64_t>((16u << 20) / bytes, 8, 256));
}

// Rank 0 measures its link to `peer` on `comm`: an 8-byte ping-pong, then streams of each size
// closed by a 1-byte ack. The peer mirrors; every other rank waits in the closing barrier.
Link measureLink(kumiComm_t comm, int rank, int peer, const Options& opt) {
  Link link;
  link.peer = peer;
  const int warm = std::max(1, opt.warmup);
  const int pings = std::max(10, 10 * opt.iters);
  const int reps = std::max(3, opt.iters / 4);
  std::vector<std::byte> buf(kStreamSizes[std::size(kStreamSizes) - 1]);
  std::byte small[8] = {};
  auto send = [&](const void* p, std::size_t n, int to) { check(kumiSend(p, n, kumiUint8, to, comm, nullptr), "kumiSend"); };
  auto recv = [&](void* p, std::size_t n, int from) { check(kumiRecv(p, n, kumiUint8, from, comm, nullptr), "kumiRecv"); };
  if (rank == 0) {
    std::vector<double> rtt;
    for (int i = 0; i < warm + pings; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      send(small, 8, peer);
      recv(small, 8, peer);
      if (i >= warm) rtt.push_back(elapsedUs(t0));
    }
    link.oneWayUs = median(rtt) / 2;
    for (std::uint64_t b : kStreamSizes) {
      const int k = streamMessages(b);
      std::vector<double> per;
      for (int r = 0; r < warm + reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        for (int j = 0; j < k; ++j) send(buf.data(), b, peer);
        recv(small, 1, peer);
        // The ack's own trip is no part of the stream.
        if (r >= warm) per.push_back(std::max(0.0, elapsedUs(t0) - link.oneWayUs) / k);
      }
      link.perMessage.emplace_back(static_cast<double>(b), median(per));
    }
    // Least squares t(b) = overhead + b / bandwidth over the sizes, on relative residuals
    // (weights 1/t^2): the sizes span 1000x, and unweighted, a few percent of noise at 4M
    // outweighs the whole 4K time and sets the intercept (seen: a 31 us "overhead" from 3 us
    // messages).
    double sw = 0, mx = 0, my = 0;
    for (auto [x, y] : link.perMessage) {
      const double w = 1.0 / std::max(y * y, 1e-6);
      sw += w, mx += w * x, my += w * y;
    }
    mx /= sw;
    my /= sw;
    double sxx = 0, sxy = 0;
    for (auto [x, y] : link.perMessage) {
      const double w = 1.0 / std::max(y * y, 1e-6);
      sxx += w * (x - mx) * (x - mx), sxy += w * (x - mx) * (y - my);
    }
    const double slope = sxy / sxx;  // us per byte
    if (slope > 0) {
      link.gbps = 1.0 / slope / 1e3;  // bytes/us / 1e3 = GB/s
      link.overheadUs = std::max(0.0, my - slope * mx);
    } else {
      // Noise swamped the sizes' differences: the largest size's rate is the honest figure.
      link.slopeFallback = true;
      const auto [bMax, tMax] = link.perMessage.back();
      link.gbps = bMax / std::max(tMax, 1e-3) / 1e3;
      link.overheadUs = 0;
    }
    link.latencyUs = std::max(0.1, link.oneWayUs - link.overheadUs);
    link.measured = true;
  } else if (rank == peer) {
    for (int i = 0; i < warm + pings; ++i) {
      recv(small, 8, 0);
      send(small, 8, 0);
    }
    for (std::uint64_t b : kStreamSizes) {
      const int k = streamMessages(b);
      for (int r = 0; r < warm + reps; ++r) {
        for (int j = 0; j < k; ++j) recv(buf.data(), b, 0);
        send(small, 1, 0);
      }
    }
  }
  check(kumiBarrier(comm, nullptr), "barrier");
  return link;
}

constexpr int kComputeRuns = 5;  // best of, after one warm-up run

double copyGbps() {
  constexpr std::size_t n = 64u << 20;
  std::vector<std::byte> src(n, std::byte{1}), dst(n, std::byte{0});  // touched: no page faults timed
  double best = 0;
  for (int i = 0; i <= kComputeRuns; ++i) {
    src[static_cast<std::size_t>(i)] = static_cast<std::byte>(i);
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), n);
    clobber(dst.data());
    const double us = elapsedUs(t0);
    if (i > 0) best = std::max(best, static_cast<double>(n) / us / 1e3);
  }
  return best;
}

double reduceGbps() {
  constexpr std::size_t n = 16u << 20;  // elements; bytes counted: one input's, as the planner's model counts them
  std::vector<float> a(n, 1.0f), b(n, 0.5f);
  double best = 0;
  for (int i = 0; i <= kComputeRuns; ++i) {
    float* __restrict pa = a.data();
    const float* __restrict pb = b.data();
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t j = 0; j < n; ++j) pa[j] += pb[j];
    clobber(pa);
    const double us = elapsedUs(t0);
    if (i > 0) best = std::max(best, static_cast<double>(n * sizeof(float)) / us / 1e3);
  }
  return best;
}

// Why `path` cannot be written, or "" if it can: checked before measuring, so that a typo in
// the name fails at once rather than after the measurements.
std::string unwritable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return "it is a directory";
    if (::access(path.c_str(), W_OK) != 0) return std::strerror(errno);
    return "";
  }
  if (errno != ENOENT) return std::strerror(errno);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return "directory " + dir + ": " + std::strerror(errno);
  return "";
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

std::string sizeName(double bytes) {
  const auto b = static_cast<std::uint64_t>(bytes);
  return b >= (1u << 20) ? std::to_string(b >> 20) + "M" : std::to_string(b >> 10) + "K";
}

int runCalibrate(const Options& opt, kumiComm_t comm, int rank, int nranks) {
  if (nranks < 2)
    die("--calibrate needs at least 2 ranks to measure a link, got " + std::to_string(nranks) +
        ": run it under kumirun -np 2 or more (add --nodes 2 to measure between hosts)");
  auto sumOverRanks = [&](std::uint64_t v) {
    std::uint64_t out = 0;
    check(kumiAllReduce(&v, &out, 1, kumiUint64, kumiSum, comm, nullptr), "allreduce(sum)");
    return out;
  };
  // Only rank 0 writes; every rank leaves with it if it cannot.
  const std::string why = rank == 0 ? unwritable(opt.calibrate) : "";
  if (rank == 0 && !why.empty()) std::fprintf(stderr, "kumi-bench: cannot write tuning file %s: %s\n", opt.calibrate.c_str(), why.c_str());
  if (sumOverRanks(why.empty() ? 0 : 1)) std::exit(2);

  std::vector<int> hostOf(static_cast<std::size_t>(nranks));
  for (int r = 0; r < nranks; ++r) check(kumiCommHost(comm, r, &hostOf[static_cast<std::size_t>(r)]), "kumiCommHost");
  const int hosts = *std::max_element(hostOf.begin(), hostOf.end()) + 1;
  int intraPeer = -1, nicPeer = -1;
  for (int r = 1; r < nranks; ++r) {
    if (intraPeer < 0 && hostOf[static_cast<std::size_t>(r)] == hostOf[0]) intraPeer = r;
    if (nicPeer < 0 && hostOf[static_cast<std::size_t>(r)] != hostOf[0]) nicPeer = r;
  }
  // Every rank has the same host map, so every rank takes the same branches below.
  Link intra, loopback, nic;
  if (intraPeer >= 0) {
    intra = measureLink(comm, rank, intraPeer, opt);
    ScopedEnv tcp("KUMI_TRANSPORT", "tcp");
    CommPtr tcpComm = initComm();
    loopback = measureLink(tcpComm.get(), rank, intraPeer, opt);
    check(kumiCommDestroy(tcpComm.release()), "kumiCommDestroy");
  }
  if (nicPeer >= 0) nic = measureLink(comm, rank, nicPeer, opt);
  double copy = 0, reduce = 0;
  if (rank == 0) {
    copy = copyGbps();
    reduce = reduceGbps();
  }

  std::string error;
  if (rank == 0) {
    char date[64];
    std::time_t now = std::time(nullptr);
    std::tm tm {};
    ::localtime_r(&now, &tm);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %z", &tm);
    std::string text = "# kumi tuning file: written by kumi-bench --calibrate on " + std::string(date) + ", " +
                       std::to_string(nranks) + " ranks on " + std::to_string(hosts) + (hosts == 1 ? " host\n" : " hosts\n");
    text += "# bandwidths in GB/s (1e9 bytes/s), times in microseconds; latency = 8-byte one-way time less the\n"
            "# per-message overhead; overhead and bandwidth fitted to t(b) = overhead + b / bandwidth (least squares\n"
            "# on relative residuals) over streams of 4K, 64K, 1M and 4M messages\n";
    auto section = [&](const char* key, const char* what, const Link& l) {
      if (!l.measured) return;
      text += std::string("# ") + key + ": rank 0 <-> rank " + std::to_string(l.peer) + ", " + what + "; 8-byte one-way " +
              fmt(l.oneWayUs) + " us; per message:";
      for (auto [b, t] : l.perMessage) text += " " + sizeName(b) + " " + fmt(t) + " us";
      if (l.slopeFallback) text += "; no positive slope in the fit: bandwidth of the largest size, overhead 0";
      text += "\n";
      text += std::string(key) + "_latency_us = " + fmt(l.latencyUs) + "\n";
      text += std::string(key) + "_gbps = " + fmt(l.gbps) + "\n";
      text += std::string(key) + "_overhead_us = " + fmt(l.overheadUs) + "\n";
    };
    section("intra", "shared memory (the default transport within a host)", intra);
    section("loopback", "tcp within the host (KUMI_TRANSPORT=tcp)", loopback);
    if (!intra.measured)
      text += "# intra_*, loopback_*: not measured: no other rank shares rank 0's host\n";
    section("nic", "tcp between hosts", nic);
    if (!nic.measured)
      text += "# nic_*: not measured: all " + std::to_string(nranks) +
              " ranks are on one host (run across hosts, or kumirun --nodes 2 to simulate them)\n";
    text += "# reduce: float32 a[i] += b[i] over 16 Mi elements (bytes: one input's); copy: memcpy of 64 MiB; best of " +
            std::to_string(kComputeRuns) + "\n";
    text += "reduce_gbps = " + fmt(reduce) + "\n";
    text += "copy_gbps = " + fmt(copy) + "\n";
    std::ofstream out(opt.calibrate, std::ios::trunc);
    out << text;
    out.close();
    if (!out) error = std::string("cannot write tuning file ") + opt.calibrate + ": " + std::strerror(errno);

    std::printf("kumi-bench --calibrate: %d ranks on %d host%s, measured from rank 0\n", nranks, hosts,
                hosts == 1 ? "" : "s");
    std::printf("  %-9s %-10s %12s %12s %13s %10s\n", "class", "pair", "one-way(us)", "latency(us)", "overhead(us)", "GB/s");
    auto line = [&](const char* name, const Link& l) {
      if (!l.measured) {
        std::printf("  %-9s not measured\n", name);
        return;
      }
      const std::string pair = "0 <-> " + std::to_string(l.peer);
      std::printf("  %-9s %-10s %12.2f %12.2f %13.2f %10.3f%s\n", name, pair.c_str(), l.oneWayUs, l.latencyUs, l.overheadUs,
                  l.gbps, l.slopeFallback ? "  (no slope: largest size's rate)" : "");
    };
    line("intra", intra);
    line("loopback", loopback);
    line("nic", nic);
    std::printf("  copy   %.3f GB/s (memcpy, 64 MiB)\n  reduce %.3f GB/s (float32 sum, 16 Mi elements)\n", copy, reduce);
    if (error.empty()) std::printf("wrote %s\n", opt.calibrate.c_str());
    std::fflush(stdout);
  }
  if (sumOverRanks(error.empty() ? 0 : 1)) {
    if (rank == 0) die(error);
    std::exit(2);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parseArgs(argc, argv);
  const std::vector<std::string> algos = compareList(opt);
  CommPtr comm;
  {
    // "auto" in a comparison is the planner's own choice, and calibration measures the default
    // transport: settings from the environment must not change either.
    std::optional<ScopedEnv> noAlgo, noTransport;
    if (!opt.compare.empty() || !opt.calibrate.empty()) noAlgo.emplace("KUMI_ALGO", nullptr);
    if (!opt.calibrate.empty()) noTransport.emplace("KUMI_TRANSPORT", nullptr);
    comm = initComm();
  }
  int rank = 0, nranks = 1;
  check(kumiCommRank(comm.get(), &rank), "kumiCommRank");
  check(kumiCommSize(comm.get(), &nranks), "kumiCommSize");
  const int status =
      opt.calibrate.empty() ? runBench(opt, algos, comm.get(), rank, nranks) : runCalibrate(opt, comm.get(), rank, nranks);
  check(kumiCommDestroy(comm.release()), "kumiCommDestroy");
  return status;
}
