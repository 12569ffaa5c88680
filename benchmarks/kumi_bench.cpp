// kumi-bench: the bandwidth benchmark, in the format of nccl-tests so that its numbers read the
// same way: size, count, type, redop, root, then time, algbw, busbw and #wrong for out-of-place
// and in-place runs. Run it under kumirun (or any launcher kumi understands):
//
//   kumirun -np 4 -- kumi-bench allreduce -b 8 -e 128M -f 2
//
// It uses only the public API, like any application. Exit status 1 if any element was wrong.
#include <kumi/kumi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/element.hpp"  // header-only: the same fp16/bf16 rounding the library uses
#include "core/types.hpp"     // header-only: canonical type and op names

namespace {

struct Options {
  std::string coll = "allreduce";
  std::uint64_t minBytes = 32 << 20, maxBytes = 32 << 20, stepBytes = 0;
  double factor = 0;
  int iters = 20, warmup = 5, check = 1, root = 0;
  std::vector<kumiDataType_t> types = {kumiFloat32};
  std::vector<kumiRedOp_t> ops = {kumiSum};
  std::string json;
};

// nccl-tests' names for the table; kumi's canonical names (core/types.hpp) for -d and JSON.
const char* kTableTypeNames[] = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "bfloat16", "float", "double"};
using kumi::kOpNames;
using kumi::kTypeNames;

[[noreturn]] void die(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "kumi-bench: %s\n", msg.c_str());
  std::exit(code);
}

void check(kumiResult_t r, const char* what) {
  if (r != kumiSuccess) die(std::string(what) + " failed: " + kumiGetLastError(), 2);
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
      "usage: kumi-bench [allreduce|reduce_scatter|allgather|broadcast|reduce] [options]\n"
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
      "      --transport NAME  auto (shared memory within a host, tcp between) or tcp (sets KUMI_TRANSPORT)\n"
      "      --json FILE       also write the results as JSON\n"
      "Sizes are total bytes as in nccl-tests (allgather: the gathered output; reduce_scatter: the input).\n");
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
    else if (a == "--algo") setenv("KUMI_ALGO", val().c_str(), 1);
    else if (a == "--transport") setenv("KUMI_TRANSPORT", val().c_str(), 1);
    else if (a == "-d") {
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
  const std::vector<std::string> known = {"allreduce", "reduce_scatter", "allgather", "broadcast", "reduce"};
  if (std::find(known.begin(), known.end(), o.coll) == known.end()) die("unknown collective '" + o.coll + "'");
  if (o.iters < 1 || o.warmup < 0) die("-n must be >= 1 and -w >= 0");
  if (o.maxBytes < o.minBytes) die("-e must be >= -b");
  if (o.factor != 0 && o.factor <= 1) die("-f must be > 1");
  return o;
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
    if (name == "allgather" || name == "reduce_scatter") return static_cast<double>(nranks - 1) / nranks;
    return 1.0;
  }
};

struct Result {
  double timeUs = 0;
  std::uint64_t wrong = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt = parseArgs(argc, argv);
  kumiComm_t comm = nullptr;
  check(kumiCommInitFromEnv(&comm), "kumiCommInitFromEnv");
  int rank = 0, nranks = 1;
  check(kumiCommRank(comm, &rank), "kumiCommRank");
  check(kumiCommSize(comm, &nranks), "kumiCommSize");
  Coll coll{nranks, rank, opt.coll};
  if ((coll.name == "broadcast" || coll.name == "reduce") && (opt.root < 0 || opt.root >= nranks))
    die("root " + std::to_string(opt.root) + " is not a rank (world size " + std::to_string(nranks) + ")");
  const bool rooted = coll.name == "broadcast" || coll.name == "reduce";
  if (!coll.reduces()) opt.ops = {kumiSum};

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

  if (rank == 0) {
    std::printf("# kumi-bench %s: %d ranks, %d warm-up and %d timed iterations, check %s\n", coll.name.c_str(), nranks,
                opt.warmup, opt.iters, opt.check ? "on" : "off");
    std::printf("#\n# %10s %12s %8s %6s %6s %9s %7s %7s %6s %9s %7s %7s %6s\n", "", "", "", "", "", "out-of-place", "", "",
                "", "in-place", "", "", "");
    std::printf("# %10s %12s %8s %6s %6s %9s %7s %7s %6s %9s %7s %7s %6s\n", "size", "count", "type", "redop", "root",
                "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
    std::printf("# %10s %12s %8s %6s %6s %9s %7s %7s %6s %9s %7s %7s %6s\n", "(B)", "(elements)", "", "", "", "(us)",
                "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
  }

  std::string jsonRows;
  double busSum = 0;
  int busCount = 0;
  std::uint64_t totalWrong = 0;
  std::vector<std::byte> sendBuf, recvBuf;

  for (kumiDataType_t type : opt.types)
    for (kumiRedOp_t op : opt.ops) {
      const std::uint64_t es = kumiTypeSize(type);
      for (std::uint64_t bytes = opt.minBytes; bytes <= opt.maxBytes;) {
        // count = elements of the whole buffer as nccl-tests prints it; per-rank block for
        // allgather and reduce_scatter.
        std::uint64_t count = bytes / es;
        const bool split = coll.name == "allgather" || coll.name == "reduce_scatter";
        if (split) count -= count % static_cast<std::uint64_t>(nranks);
        const std::uint64_t block = split ? count / static_cast<std::uint64_t>(nranks) : count;
        const std::uint64_t sendElems = coll.name == "allgather" ? block : count;
        const std::uint64_t recvElems = coll.name == "reduce_scatter" ? block : count;
        sendBuf.assign(sendElems * es, std::byte{0});
        recvBuf.assign(recvElems * es, std::byte{0});
        Result res[2];
        for (int inPlace = 0; inPlace < 2; ++inPlace) {
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
          auto launch = [&]() {
            kumiResult_t r = kumiSuccess;
            if (coll.name == "allreduce") r = kumiAllReduce(send, recv, count, type, op, comm, nullptr);
            else if (coll.name == "reduce_scatter") r = kumiReduceScatter(send, recv, block, type, op, comm, nullptr);
            else if (coll.name == "allgather") r = kumiAllGather(send, recv, block, type, comm, nullptr);
            else if (coll.name == "broadcast") r = kumiBroadcast(send, recv, count, type, opt.root, comm, nullptr);
            else r = kumiReduce(send, recv, count, type, op, opt.root, comm, nullptr);
            check(r, coll.name.c_str());
          };
          auto fill = [&]() {
            for (std::uint64_t i = 0; i < sendElems; ++i) kumi::storeElement(type, fillBase, i, valueOf(rank, i, op));
          };
          std::uint64_t wrong = 0;
          if (opt.check) {
            fill();
            if (!inPlace) std::fill(recvBuf.begin(), recvBuf.end(), std::byte{0xA5});  // stale data must not pass
            launch();
            const bool checkHere = !(coll.name == "reduce" && rank != opt.root);
            if (checkHere) {
              for (std::uint64_t i = 0; i < recvElems; ++i) {
                double want;
                if (coll.name == "allreduce" || coll.name == "reduce") want = expectedReduce(type, op, nranks, i);
                else if (coll.name == "reduce_scatter")
                  want = expectedReduce(type, op, nranks, static_cast<std::uint64_t>(rank) * block + i);
                else if (coll.name == "allgather")
                  want = kumi::roundToType(type, valueOf(static_cast<int>(i / block), i % block, op));
                else
                  want = kumi::roundToType(type, valueOf(opt.root, i, op));
                if (kumi::loadElement(type, recv, i) != want) ++wrong;
              }
            }
            wrong = sumOverRanks(wrong);
          }
          if (!opt.check) fill();
          for (int w = 0; w < opt.warmup; ++w) launch();
          check(kumiBarrier(comm, nullptr), "barrier");
          auto t0 = std::chrono::steady_clock::now();
          for (int it = 0; it < opt.iters; ++it) launch();
          auto t1 = std::chrono::steady_clock::now();
          double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / opt.iters;
          res[inPlace] = {maxOverRanks(us), wrong};
        }
        const std::uint64_t shownBytes = count * es;
        if (rank == 0) {
          double alg[2], bus[2];
          for (int k = 0; k < 2; ++k) {
            alg[k] = static_cast<double>(shownBytes) / 1e3 / res[k].timeUs;  // bytes/us/1e3 = GB/s
            bus[k] = alg[k] * coll.busFactor();
          }
          std::printf("  %10llu %12llu %8s %6s %6d %9.2f %7.2f %7.2f %6llu %9.2f %7.2f %7.2f %6llu\n",
                      static_cast<unsigned long long>(shownBytes), static_cast<unsigned long long>(count), kTableTypeNames[type],
                      coll.reduces() ? kOpNames[op] : "none", rooted ? opt.root : -1, res[0].timeUs, alg[0], bus[0],
                      static_cast<unsigned long long>(res[0].wrong), res[1].timeUs, alg[1], bus[1],
                      static_cast<unsigned long long>(res[1].wrong));
          std::fflush(stdout);
          busSum += bus[0] + bus[1];
          busCount += 2;
          for (int k = 0; k < 2; ++k) {
            char row[512];
            std::snprintf(row, sizeof row,
                          "%s    {\"bytes\": %llu, \"count\": %llu, \"type\": \"%s\", \"op\": \"%s\", \"inplace\": %s, "
                          "\"time_us\": %.3f, \"algbw_GBps\": %.4f, \"busbw_GBps\": %.4f, \"wrong\": %llu}",
                          jsonRows.empty() ? "" : ",\n", static_cast<unsigned long long>(shownBytes),
                          static_cast<unsigned long long>(count), kTypeNames[type], kOpNames[op], k ? "true" : "false",
                          res[k].timeUs, alg[k], bus[k], static_cast<unsigned long long>(res[k].wrong));
            jsonRows += row;
          }
        }
        totalWrong += res[0].wrong + res[1].wrong;
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
    if (!opt.json.empty()) {
      std::ofstream out(opt.json);
      out << "{\n  \"tool\": \"kumi-bench\", \"library\": \"kumi\", \"collective\": \"" << coll.name << "\", \"nranks\": "
          << nranks << ",\n  \"dtype\": \"" << (opt.types.size() == 1 ? kTypeNames[opt.types[0]] : "mixed")
          << "\", \"op\": \"" << (opt.ops.size() == 1 ? kOpNames[opt.ops[0]] : "mixed") << "\", \"peak_rss_mib\": " << peakMb
          << ",\n  \"results\": [\n" << jsonRows << "\n  ]\n}\n";
      if (!out) die("cannot write " + opt.json);
    }
  }
  check(kumiCommDestroy(comm), "kumiCommDestroy");
  return totalWrong ? 1 : 0;
}
