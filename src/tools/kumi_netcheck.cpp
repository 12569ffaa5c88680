// kumi-netcheck: the cluster's continuous network check. Every rank of a job runs it; rank 0
// analyses and reports (docs/NETCHECK.md). Exit code: 0 healthy, 1 degraded, 2 failed to run
// or to deliver its results.
#include <kumi/kumi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/scoped_env.hpp"
#include "tools/netcheck/baseline_file.hpp"
#include "tools/netcheck/measure.hpp"
#include "tools/netcheck/options.hpp"
#include "tools/netcheck/prometheus_text.hpp"
#include "tools/netcheck/pushgateway.hpp"
#include "tools/netcheck/report.hpp"
#include "tools/netcheck/tournament.hpp"

namespace kumi::netcheck {
namespace {

using Clock = std::chrono::steady_clock;

// The point-to-point part: rounds while the budget allows. Rank 0 decides for everyone, from the
// rounds so far, whether the next one still fits.
void measureLinks(const World& w, const Options& o, const Deadline& end, std::vector<LinkResult>* links,
                  RunInfo* run) {
  const auto rounds = roundRobinRounds(w.nodes());
  const bool tty = o.progress && w.rank == 0 && ::isatty(STDERR_FILENO);
  const auto t0 = Clock::now();
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    // Another round only when the rounds so far say it fits (rank 0's clock decides).
    const bool fits = r == 0 || end.msLeft() / 1000.0 >= secondsSince(t0) / static_cast<double>(r);
    if (!agreeWithRank0(w, fits)) {
      run->complete = false;
      run->notes.push_back("budget reached after round " + std::to_string(r) + " of " + std::to_string(rounds.size()) +
                           " (" + std::to_string(static_cast<int>(secondsSince(t0))) + " s): pairs of later rounds not measured");
      break;
    }
    if (tty) std::fprintf(stderr, "\rkumi-netcheck: round %zu of %zu ...", r + 1, rounds.size());
    auto got = measureRound(w, rounds[r], o.p2p);
    links->insert(links->end(), got.begin(), got.end());
    if (r == 0 && w.rank == 0 && end.expired() && rounds.size() > 1) {
      const double one = secondsSince(t0);
      run->notes.push_back("the budget is smaller than one round (" + std::to_string(one).substr(0, 5) +
                           " s here): --budget " + std::to_string(static_cast<int>(one * rounds.size() * 1.2) + 1) +
                           "s would measure all " + std::to_string(rounds.size()) + " rounds");
    }
  }
  if (tty) std::fprintf(stderr, "\r%60s\r", "");
  if (o.intraNode && !end.expired()) {
    auto got = measureIntraNode(w, o.p2p);
    links->insert(links->end(), got.begin(), got.end());
  }
}

// One rail of --rails: a communicator whose transport is bound to that rail's interface, the
// pairs measured over it, its links labelled with the rail and the main world's node numbers.
void measureRail(const World& w, const Options& o, int rail, const Deadline& end, std::vector<LinkResult>* links,
                 RunInfo* run) {
  kumiComm_t raw = nullptr;
  {
    ScopedEnv bind("KUMI_SOCKET_IFNAME", o.railInterfaces[static_cast<std::size_t>(rail)].c_str());
    if (kumiCommInitFromEnv(&raw) != kumiSuccess)
      throw std::runtime_error("rail " + std::to_string(rail) + " (" + o.railInterfaces[static_cast<std::size_t>(rail)] +
                               "): " + kumiGetLastError());
  }
  CommHandle comm(raw, &kumiCommDestroy);
  const World rw = discoverWorld(raw);
  std::vector<LinkResult> got;
  Options one = o;
  one.intraNode = false;  // measured once, on the main communicator
  measureLinks(rw, one, end, &got, run);
  std::map<std::string, int> mainIndex;
  for (int n = 0; n < w.nodes(); ++n) mainIndex[w.nodeNames[static_cast<std::size_t>(n)]] = n;
  for (auto& l : got) {
    l.key.src = mainIndex.at(rw.nodeNames[static_cast<std::size_t>(l.key.src)]);
    l.key.dst = mainIndex.at(rw.nodeNames[static_cast<std::size_t>(l.key.dst)]);
    l.key.rail = rail;
    links->push_back(std::move(l));
  }
}

// Rank 0: analysis and every output. Each output is attempted even when an earlier one failed;
// a failure to deliver turns the exit code to 2 and is said.
int report(const Options& o, const std::vector<LinkResult>& links, const std::vector<AllreduceRow>& sweep, RunInfo run) {
  Baseline baseline;
  if (!o.baseline.empty()) {
    try {
      baseline = loadBaseline(o.baseline);
    } catch (const Error& e) {
      run.failure = e.what();
      run.notes.push_back("baseline not used; links compared with their peers instead");
    }
  }
  const Analysis a = analyse(links, run.nodeNames, baseline, o.analysis);
  std::fputs(textReport(a, sweep, run).c_str(), stdout);
  std::fflush(stdout);
  std::vector<std::string> problems;
  auto attempt = [&](const char* what, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      problems.push_back(std::string(what) + ": " + e.what());
    }
  };
  if (!o.saveBaseline.empty())
    attempt("--save-baseline", [&] { writeFileAtomically(o.saveBaseline, formatBaseline(links, run.nodeNames)); });
  if (!o.json.empty()) attempt("--json", [&] { writeFileAtomically(o.json, jsonReport(a, sweep, run)); });
  const std::string metrics = exposition(metricFamilies(a, sweep, run));
  if (!o.metricsFile.empty()) attempt("--metrics-file", [&] { writeFileAtomically(o.metricsFile, metrics); });
  if (!o.pushgateway.empty())
    attempt("--pushgateway", [&] { push(pushTarget(o.pushgateway, o.job, o.grouping), metrics, 10); });
  for (const auto& p : problems) std::fprintf(stderr, "kumi-netcheck: %s\n", p.c_str());
  if (!run.failure.empty()) std::fprintf(stderr, "kumi-netcheck: %s\n", run.failure.c_str());
  return problems.empty() ? exitCode(a, run) : 2;
}

int run(int argc, char** argv) {
  Options o;
  try {
    o = parseOptions(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const Error& e) {
    std::fprintf(stderr, "kumi-netcheck: %s\n", e.what());
    return 2;
  }
  if (o.help) {
    std::fputs(usageText(), stdout);
    return 0;
  }
  kumiComm_t raw = nullptr;
  if (kumiCommInitFromEnv(&raw) != kumiSuccess) {
    std::fprintf(stderr, "kumi-netcheck: cannot join the job: %s\n", kumiGetLastError());
    return 2;
  }
  CommHandle comm(raw, &kumiCommDestroy);
  RunInfo info;
  info.startedAt = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto t0 = Clock::now();
  std::vector<LinkResult> links;
  std::vector<AllreduceRow> sweep;
  World w;
  bool commOk = true;
  try {
    w = discoverWorld(raw);
    info.nodeNames = w.nodeNames;
    info.ranks = w.size;
    // Point-to-point first (it finds what the alerts are about); the sweep gets what is left,
    // but at least a fifth of the budget when it is asked for.
    const double p2pShare = o.sweep.sizes.empty() ? 1.0 : 0.8;
    const Deadline p2pEnd = Deadline::after(o.budgetSeconds * p2pShare);
    if (o.railInterfaces.empty()) {
      measureLinks(w, o, p2pEnd, &links, &info);
    } else {
      for (std::size_t r = 0; r < o.railInterfaces.size(); ++r) {
        if (r > 0 && !agreeWithRank0(w, !p2pEnd.expired())) {
          info.complete = false;
          info.notes.push_back("budget reached before rail " + std::to_string(r));
          break;
        }
        measureRail(w, o, static_cast<int>(r), p2pEnd, &links, &info);
      }
    }
    if (!o.sweep.sizes.empty())
      sweep = allreduceSweep(w, o.sweep, Deadline::after(o.budgetSeconds - secondsSince(t0)), &info.notes);
  } catch (const std::exception& e) {
    info.failure = std::string("measurement stopped: ") + e.what();
    info.complete = false;
    commOk = false;
  }
  info.seconds = secondsSince(t0);
  int code = 2;
  if (w.rank == 0 && !info.nodeNames.empty()) code = report(o, links, sweep, info);
  // Every rank leaves with rank 0's verdict, so that the job's status is the check's.
  if (commOk && kumiBroadcast(&code, &code, 1, kumiInt32, 0, raw, nullptr) != kumiSuccess) code = 2;
  if (!commOk && w.rank != 0) std::fprintf(stderr, "kumi-netcheck: rank %d: %s\n", w.rank, info.failure.c_str());
  return code;
}

}  // namespace
}  // namespace kumi::netcheck

int main(int argc, char** argv) { return kumi::netcheck::run(argc, argv); }
