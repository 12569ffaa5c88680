// Shared driver for kumi's peer benchmarks (kumi-bench-gloo, kumi-bench-mpi).
//
// Both programs must measure exactly the same thing as kumi-bench so that
// benchmarks/compare.py can put the numbers side by side; keeping the size
// sweep, timing, correctness check, table and JSON in one place guarantees
// that. Each program only supplies a small communicator adaptor:
//
//   int  rank() const;  int size() const;
//   void barrier();
//   void prepare(float* send, float* recv, std::size_t count); // once per size
//   void allreduce();                                          // timed op
//   double   max_over_ranks(double v);
//   uint64_t sum_over_ranks(uint64_t v);
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kumi_peer {

struct Options {
  // Defaults match benchmarks/compare.py so a bare run is comparable.
  std::size_t min_bytes = 64 * 1024;
  std::size_t max_bytes = 64 * 1024 * 1024;
  double factor = 2.0;
  int iters = 20;
  int warmup = 5;
  std::string json_path;  // empty: no JSON output
  std::string store_dir;  // gloo only: FileStore rendezvous directory
  std::string store_prefix = "kumi-bench-gloo";  // gloo only
};

struct Result {
  std::size_t bytes = 0;
  std::size_t count = 0;
  double time_us = 0;  // per iteration, max over ranks
  double algbw_GBps = 0;
  double busbw_GBps = 0;
  std::uint64_t wrong = 0;  // summed over ranks
};

// Parses "64", "64K", "16M", "1G" (binary multiples, as nccl-tests does).
inline std::size_t parse_size(std::string_view text) {
  if (text.empty()) throw std::invalid_argument("empty size");
  std::size_t mult = 1;
  switch (text.back()) {
    case 'K': case 'k': mult = std::size_t{1} << 10; break;
    case 'M': case 'm': mult = std::size_t{1} << 20; break;
    case 'G': case 'g': mult = std::size_t{1} << 30; break;
    default: break;
  }
  if (mult != 1) text.remove_suffix(1);
  std::size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      throw std::invalid_argument("bad size '" + std::string(text) + "'");
    value = value * 10 + static_cast<std::size_t>(c - '0');
  }
  return value * mult;
}

[[noreturn]] inline void usage(const char* tool, bool gloo, int rc) {
  std::fprintf(rc == 0 ? stdout : stderr,
               "usage: %s [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS]"
               " [-w WARMUP]\n"
               "          [-d float32] [-o sum] [--json FILE]%s\n"
               "  sizes accept K/M/G suffixes (x1024); defaults -b 64K -e 64M"
               " -f 2 -n 20 -w 5\n",
               tool, gloo ? " --store-dir DIR [--store-prefix P]" : "");
  if (gloo)
    std::fprintf(rc == 0 ? stdout : stderr,
                 "  rank/size come from KUMI_RANK / KUMI_WORLD_SIZE; DIR must"
                 " be fresh per run\n  (Gloo's FileStore refuses existing"
                 " keys) unless --store-prefix differs.\n");
  std::exit(rc);
}

inline Options parse_args(int argc, char** argv, const char* tool, bool gloo) {
  Options opt;
  auto value = [&](int& i) -> std::string_view {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", tool, argv[i]);
      usage(tool, gloo, 2);
    }
    return argv[++i];
  };
  auto require = [](std::string_view got, std::string_view want,
                    const char* flag) {
    if (got != want)
      throw std::invalid_argument(std::string("only ") + flag + " " +
                                  std::string(want) + " is supported");
  };
  try {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "-b") opt.min_bytes = parse_size(value(i));
      else if (a == "-e") opt.max_bytes = parse_size(value(i));
      else if (a == "-f") opt.factor = std::stod(std::string(value(i)));
      else if (a == "-n") opt.iters = std::stoi(std::string(value(i)));
      else if (a == "-w") opt.warmup = std::stoi(std::string(value(i)));
      else if (a == "--json") opt.json_path = value(i);
      // -d/-o exist only so callers can pass kumi-bench's full command line;
      // the peers implement just the float32 sum that is being compared.
      else if (a == "-d") require(value(i), "float32", "-d");
      else if (a == "-o") require(value(i), "sum", "-o");
      else if (gloo && a == "--store-dir") opt.store_dir = value(i);
      else if (gloo && a == "--store-prefix") opt.store_prefix = value(i);
      else if (a == "-h" || a == "--help") usage(tool, gloo, 0);
      else throw std::invalid_argument("unknown argument '" + std::string(a) + "'");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
    usage(tool, gloo, 2);
  }
  const char* bad = nullptr;
  if (opt.min_bytes < sizeof(float)) bad = "-b must be at least 4 bytes";
  else if (opt.max_bytes < opt.min_bytes) bad = "-e must be >= -b";
  else if (opt.factor <= 1.0) bad = "-f must be > 1";
  else if (opt.iters < 1) bad = "-n must be >= 1";
  else if (opt.warmup < 0) bad = "-w must be >= 0";
  else if (gloo && opt.store_dir.empty()) bad = "--store-dir is required";
  if (bad) {
    std::fprintf(stderr, "%s: %s\n", tool, bad);
    usage(tool, gloo, 2);
  }
  return opt;
}

// Message sizes of the sweep, rounded down to whole floats.
inline std::vector<std::size_t> sweep_sizes(const Options& opt) {
  std::vector<std::size_t> sizes;
  for (std::size_t b = opt.min_bytes; b <= opt.max_bytes;) {
    sizes.push_back(b / sizeof(float) * sizeof(float));
    auto next = static_cast<std::size_t>(static_cast<double>(b) * opt.factor);
    if (next <= b) break;  // a factor too close to 1 would loop forever
    b = next;
  }
  return sizes;
}

// Small integers, different per rank, so the float sum is exact in any
// reduction order and a missing or duplicated contribution is detected.
// The value only depends on (rank*7 + i) mod 13, so the expected sum only
// depends on i mod 13 and can be precomputed.
constexpr int kPattern = 13;
inline float fill_value(int rank, std::size_t i) {
  return static_cast<float>((static_cast<std::size_t>(rank) * 7 + i) % kPattern + 1);
}

inline void fill_send(std::vector<float>& buf, int rank) {
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = fill_value(rank, i);
}

inline std::array<float, kPattern> expected_sums(int nranks) {
  std::array<float, kPattern> sums{};
  for (std::size_t i = 0; i < sums.size(); ++i)
    for (int r = 0; r < nranks; ++r) sums[i] += fill_value(r, i);
  return sums;
}

inline std::uint64_t count_wrong(const float* recv, std::size_t count,
                                 const std::array<float, kPattern>& sums) {
  std::uint64_t wrong = 0;
  for (std::size_t i = 0; i < count; ++i)
    if (recv[i] != sums[i % kPattern]) ++wrong;
  return wrong;
}

// Bus bandwidth as nccl-tests defines it for allreduce: what each link has
// to carry, so numbers are comparable across rank counts.
inline double busbw_factor(int nranks) {
  return nranks > 0 ? 2.0 * (nranks - 1) / nranks : 0.0;
}

template <class Comm>
Result measure_one(Comm& comm, std::size_t bytes, std::vector<float>& send,
                   std::vector<float>& recv, const Options& opt,
                   const std::array<float, kPattern>& sums) {
  Result res;
  res.bytes = bytes;
  res.count = bytes / sizeof(float);

  // Out-of-place: the send buffer keeps its pattern, and a sentinel in the
  // receive buffer makes stale output from the previous size count as wrong.
  std::fill(recv.begin(), recv.begin() + res.count, -1.0f);
  comm.prepare(send.data(), recv.data(), res.count);

  // The first iteration doubles as the correctness check.
  comm.allreduce();
  res.wrong = comm.sum_over_ranks(count_wrong(recv.data(), res.count, sums));

  for (int i = 0; i < opt.warmup; ++i) comm.allreduce();
  comm.barrier();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < opt.iters; ++i) comm.allreduce();
  auto t1 = std::chrono::steady_clock::now();

  double local_us =
      std::chrono::duration<double, std::micro>(t1 - t0).count() / opt.iters;
  // The slowest rank defines when the collective is done for everybody.
  res.time_us = comm.max_over_ranks(local_us);
  res.algbw_GBps = static_cast<double>(bytes) / (res.time_us * 1e-6) / 1e9;
  res.busbw_GBps = res.algbw_GBps * busbw_factor(comm.size());
  return res;
}

inline void print_header(const char* library, int nranks, const Options& opt) {
  std::printf("# %s allreduce, %d ranks, float32 sum, out-of-place, iters %d,"
              " warmup %d\n",
              library, nranks, opt.iters, opt.warmup);
  std::printf("# %12s %12s %8s %6s %10s %8s %8s %8s\n", "size", "count",
              "type", "redop", "time", "algbw", "busbw", "#wrong");
  std::printf("# %12s %12s %8s %6s %10s %8s %8s %8s\n", "(B)", "(elements)",
              "", "", "(us)", "(GB/s)", "(GB/s)", "");
}

inline void print_row(const Result& r) {
  std::printf("  %12zu %12zu %8s %6s %10.2f %8.3f %8.3f %8llu\n", r.bytes,
              r.count, "float", "sum", r.time_us, r.algbw_GBps, r.busbw_GBps,
              static_cast<unsigned long long>(r.wrong));
  std::fflush(stdout);
}

// Same schema as kumi-bench's --json (see benchmarks/compare.py).
inline bool write_json(const std::string& path, const char* tool,
                       const char* library, int nranks,
                       const std::vector<Result>& results) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  std::fprintf(f,
               "{\"tool\": \"%s\", \"library\": \"%s\", \"collective\": "
               "\"allreduce\", \"nranks\": %d, \"dtype\": \"float32\", "
               "\"op\": \"sum\", \"results\": [",
               tool, library, nranks);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::fprintf(f,
                 "%s\n  {\"bytes\": %zu, \"count\": %zu, \"inplace\": false, "
                 "\"time_us\": %.6g, \"algbw_GBps\": %.6g, \"busbw_GBps\": "
                 "%.6g, \"wrong\": %llu}",
                 i ? "," : "", r.bytes, r.count, r.time_us, r.algbw_GBps,
                 r.busbw_GBps, static_cast<unsigned long long>(r.wrong));
  }
  std::fprintf(f, "\n]}\n");
  return std::fclose(f) == 0;
}

// Runs the whole sweep. Returns the process exit code: 0 on success, 1 if
// any element was wrong or the JSON could not be written (rank 0 only).
template <class Comm>
int run_allreduce_bench(Comm& comm, const Options& opt, const char* tool,
                        const char* library) {
  const bool root = comm.rank() == 0;
  const auto sizes = sweep_sizes(opt);
  const std::size_t max_count = sizes.back() / sizeof(float);
  std::vector<float> send(max_count), recv(max_count);
  fill_send(send, comm.rank());
  const auto sums = expected_sums(comm.size());

  if (root) print_header(library, comm.size(), opt);
  std::vector<Result> results;
  std::uint64_t total_wrong = 0;
  for (std::size_t bytes : sizes) {
    results.push_back(measure_one(comm, bytes, send, recv, opt, sums));
    total_wrong += results.back().wrong;
    if (root) print_row(results.back());
  }

  if (!root) return total_wrong ? 1 : 0;
  std::printf("# wrong elements: %llu\n",
              static_cast<unsigned long long>(total_wrong));
  if (!opt.json_path.empty() &&
      !write_json(opt.json_path, tool, library, comm.size(), results)) {
    std::fprintf(stderr, "%s: cannot write %s: %s\n", tool,
                 opt.json_path.c_str(), std::strerror(errno));
    return 1;
  }
  return total_wrong ? 1 : 0;
}

}  // namespace kumi_peer
