// kumi-netcheck's logic without a network: the tournament, the statistics, the localisation of
// slow links, the Prometheus text and the Pushgateway client (against a one-shot server here).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "core/socket.hpp"
#include "tools/netcheck/baseline_file.hpp"
#include "tools/netcheck/findings.hpp"
#include "tools/netcheck/options.hpp"
#include "tools/netcheck/report.hpp"
#include "tools/netcheck/prometheus_text.hpp"
#include "tools/netcheck/pushgateway.hpp"
#include "tools/netcheck/robust_stats.hpp"
#include "tools/netcheck/tournament.hpp"

namespace kumi::netcheck {
namespace {

TEST(Tournament, EveryPairOnceAndNoNodeTwiceInARound) {
  for (int n = 0; n <= 33; ++n) {
    const auto rounds = roundRobinRounds(n);
    if (n < 2) {
      EXPECT_TRUE(rounds.empty()) << n;
      continue;
    }
    EXPECT_EQ(rounds.size(), static_cast<std::size_t>(n % 2 ? n : n - 1)) << n;
    std::set<std::pair<int, int>> pairs;
    for (const auto& round : rounds) {
      std::set<int> busy;
      for (const Pair& p : round) {
        ASSERT_LT(p.a, p.b);
        ASSERT_GE(p.a, 0);
        ASSERT_LT(p.b, n);
        EXPECT_TRUE(busy.insert(p.a).second) << "node " << p.a << " twice in a round, n=" << n;
        EXPECT_TRUE(busy.insert(p.b).second) << "node " << p.b << " twice in a round, n=" << n;
        EXPECT_TRUE(pairs.insert({p.a, p.b}).second) << "pair measured twice, n=" << n;
      }
      EXPECT_EQ(round.size(), static_cast<std::size_t>(n / 2)) << "a round leaves a pair idle, n=" << n;
    }
    EXPECT_EQ(pairs.size(), static_cast<std::size_t>(n * (n - 1) / 2)) << n;
  }
}

TEST(RobustStats, MedianMadQuantile) {
  EXPECT_EQ(median({}), 0);
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(scaledMad({5}), 0);
  // One wild value moves neither.
  EXPECT_EQ(median({10, 11, 12, 1000}), 11.5);
  EXPECT_NEAR(scaledMad({10, 11, 12, 13, 1000}), 1.4826, 1e-9);
  EXPECT_EQ(quantile({0, 10}, 0.9), 9);
  EXPECT_EQ(quantile({7}, 0.1), 7);
}

// A cluster of `nodes` nodes and `rails` rails where every directed link measures `gbps`, with
// +-3% of deterministic jitter; `slow(src, dst, rail)` returns a factor to apply.
template <class F>
std::vector<LinkResult> cluster(int nodes, int rails, double gbps, F slow) {
  std::vector<LinkResult> out;
  int k = 0;
  for (int r = 0; r < rails; ++r)
    for (int s = 0; s < nodes; ++s)
      for (int d = 0; d < nodes; ++d) {
        if (s == d) continue;
        const double jitter = 1 + 0.03 * ((k++ * 7919) % 13 - 6) / 6.0;
        LinkResult l;
        l.key = {s, d, r, "tcp"};
        l.bandwidth = gbps * 1e9 * jitter * slow(s, d, r);
        l.latency = 20e-6 / slow(s, d, r);
        l.repeats = 5;
        out.push_back(l);
      }
  return out;
}

std::vector<std::string> names(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("node-" + std::to_string(i));
  return v;
}

TEST(Findings, HealthyClusterHasNone) {
  for (int n : {2, 3, 4, 8}) {
    const auto a = analyse(cluster(n, 2, 1.1, [](int, int, int) { return 1.0; }), names(n), {}, {});
    EXPECT_TRUE(a.healthy()) << n << " nodes: " << (a.findings.empty() ? "" : a.findings[0].summary);
  }
}

TEST(Findings, OneSlowNodeAndOneSlowPairAreToldApart) {
  // The virtual-cluster test's picture: node 3's link at a tenth, the pair 0 <-> 1 at a third.
  auto slow = [](int s, int d, int) {
    if (s == 3 || d == 3) return 0.1;
    if ((s == 0 && d == 1) || (s == 1 && d == 0)) return 0.33;
    return 1.0;
  };
  const auto a = analyse(cluster(5, 1, 1.1, slow), names(5), {}, {});
  ASSERT_EQ(a.findings.size(), 2u);
  EXPECT_EQ(a.findings[0].scope, Scope::Node);
  EXPECT_EQ(a.findings[0].node, 3);
  EXPECT_EQ(a.findings[0].severity, Severity::Critical);
  EXPECT_NE(a.findings[0].summary.find("node-3"), std::string::npos) << a.findings[0].summary;
  EXPECT_EQ(a.findings[0].evidence.size(), 8u);  // 4 peers, both directions
  EXPECT_EQ(a.findings[1].scope, Scope::Pair);
  EXPECT_EQ(a.findings[1].node, 0);
  EXPECT_EQ(a.findings[1].peer, 1);
  EXPECT_EQ(a.findings[1].severity, Severity::Critical);  // -67%
  EXPECT_EQ(a.findings[1].evidence.size(), 2u);
  const auto in = a.nodesInFindings(5);
  EXPECT_EQ(in, (std::vector<bool>{true, true, false, true, false}));
}

TEST(Findings, FourNodesOneSlowNodeStillNamed) {
  // Half of the directed links touch the slow node: the middle of the distribution is no reference.
  const auto a = analyse(cluster(4, 1, 1.1, [](int s, int d, int) { return s == 2 || d == 2 ? 0.5 : 1.0; }), names(4), {}, {});
  ASSERT_EQ(a.findings.size(), 1u) << a.findings.back().summary;
  EXPECT_EQ(a.findings[0].scope, Scope::Node);
  EXPECT_EQ(a.findings[0].node, 2);
}

TEST(Findings, OneNicAndOneRail) {
  // Node 1's NIC on rail 1 at 60%; other rails of node 1 fine.
  auto a = analyse(cluster(4, 4, 1.1, [](int s, int d, int r) { return r == 1 && (s == 1 || d == 1) ? 0.6 : 1.0; }),
                   names(4), {}, {});
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_EQ(a.findings[0].scope, Scope::Nic);
  EXPECT_EQ(a.findings[0].node, 1);
  EXPECT_EQ(a.findings[0].rail, 1);
  EXPECT_EQ(a.findings[0].severity, Severity::Warning);  // -40%: above the critical bar of -50%
  // Rail 2 slow everywhere: one rail finding, no node blamed.
  a = analyse(cluster(4, 4, 1.1, [](int, int, int r) { return r == 2 ? 0.3 : 1.0; }), names(4), {}, {});
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_EQ(a.findings[0].scope, Scope::Rail);
  EXPECT_EQ(a.findings[0].rail, 2);
}

TEST(Findings, TwoNodesCannotBlameAnEnd) {
  const auto a = analyse(cluster(2, 1, 1.1, [](int, int, int) { return 0.2; }), names(2), {},
                         {.thresholds = {{"tcp", {1e9, 0}}}});
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_EQ(a.findings[0].scope, Scope::Pair);
  EXPECT_NE(a.findings[0].summary.find("cannot be told"), std::string::npos);
  EXPECT_EQ(a.links[0].expectedFrom, "threshold");
}

TEST(Findings, BaselineWinsAndFailuresAreCritical) {
  auto links = cluster(3, 1, 1.1, [](int, int, int) { return 1.0; });
  Baseline b;
  b[{"node-0", "node-2", 0, "tcp"}] = {2.2e9, 10e-6};  // this link used to do twice as much
  links[4].error = "connection refused";                 // node-2 -> node-0
  const auto a = analyse(links, names(3), b, {});
  ASSERT_EQ(a.findings.size(), 1u) << a.findings.back().summary;
  EXPECT_EQ(a.findings[0].scope, Scope::Pair);
  EXPECT_EQ(a.findings[0].severity, Severity::Critical);
  ASSERT_EQ(a.findings[0].evidence.size(), 2u);
  std::string all = a.findings[0].evidence[0] + "\n" + a.findings[0].evidence[1];
  EXPECT_NE(all.find("[baseline]"), std::string::npos) << all;
  EXPECT_NE(all.find("connection refused"), std::string::npos) << all;
}

TEST(Findings, HighLatencyAlone) {
  auto links = cluster(4, 1, 1.1, [](int, int, int) { return 1.0; });
  links[0].latency = 500e-6;  // node-0 -> node-1
  links[1].latency = 44e-6;   // node-0 -> node-2: twice the others, but within the noise floor
  const auto a = analyse(links, names(4), {}, {});
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_TRUE(a.links[0].laggy);
  EXPECT_FALSE(a.links[0].slow);
  EXPECT_FALSE(a.links[1].laggy);
  EXPECT_TRUE(analyse(links, names(4), {}, {.latencyFloor = 0}).links[1].laggy);
}

TEST(Prometheus, ExpositionEscapesAndChecks) {
  MetricFamily f{"kumi_netcheck_p2p_bandwidth_bytes_per_second", "Point-to-point bandwidth.\nBytes/s", "gauge",
                 {{{{"src_node", "a\"b"}, {"dst_node", "c\\d"}}, 1.5e9}, {{}, 2}}};
  const std::string t = exposition({f});
  EXPECT_EQ(t,
            "# HELP kumi_netcheck_p2p_bandwidth_bytes_per_second Point-to-point bandwidth.\\nBytes/s\n"
            "# TYPE kumi_netcheck_p2p_bandwidth_bytes_per_second gauge\n"
            "kumi_netcheck_p2p_bandwidth_bytes_per_second{src_node=\"a\\\"b\",dst_node=\"c\\\\d\"} 1500000000\n"
            "kumi_netcheck_p2p_bandwidth_bytes_per_second 2\n");
  EXPECT_THROW(exposition({{"1bad", "", "gauge", {}}}), Error);
  EXPECT_THROW(exposition({{"ok", "", "gauge", {{{{"bad-label", "x"}}, 1}}}}), Error);
  EXPECT_THROW(exposition({{"ok", "", "gauge", {{{{"__reserved", "x"}}, 1}}}}), Error);
  EXPECT_THROW(exposition({f, f}), Error);
}

TEST(Prometheus, FileIsReplacedWhole) {
  char dir[] = "/tmp/kumi-netcheck-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/kumi.prom";
  writeFileAtomically(path, "a 1\n");
  writeFileAtomically(path, "b 2\n");
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(text, "b 2\n");
  EXPECT_THROW(writeFileAtomically(std::string(dir) + "/missing/kumi.prom", "x"), Error);
  std::remove(path.c_str());
  ::rmdir(dir);
}

TEST(Pushgateway, UrlAndGroupingKey) {
  auto t = pushTarget("http://127.0.0.1:9091", "kumi-netcheck", {{"instance", "node-1"}});
  EXPECT_EQ(t.host, "127.0.0.1");
  EXPECT_EQ(t.port, 9091);
  EXPECT_EQ(t.path, "/metrics/job/kumi-netcheck/instance/node-1");
  t = pushTarget("http://gw.monitoring/prefix/", "job", {{"cluster", "a/b"}, {"empty", ""}});
  EXPECT_EQ(t.host, "gw.monitoring");
  EXPECT_EQ(t.port, 9091);
  EXPECT_EQ(t.path, "/prefix/metrics/job/job/cluster@base64/YS9i/empty@base64/=");
  t = pushTarget("http://[::1]:9999", "j", {});
  EXPECT_EQ(t.host, "::1");
  EXPECT_EQ(t.port, 9999);
  EXPECT_THROW(pushTarget("https://gw:9091", "j", {}), Error);
  EXPECT_THROW(pushTarget("gw:9091", "j", {}), Error);
  EXPECT_THROW(pushTarget("http://gw:9091", "", {}), Error);
  EXPECT_EQ(base64Url("a/b"), "YS9i");
  EXPECT_EQ(base64Url("ab"), "YWI=");
  EXPECT_EQ(base64Url("\xff\xfe"), "__4=");
}

// A one-shot HTTP server on loopback answering `status`; returns what it received.
struct OneShotServer {
  Fd listener;
  int port = 0;
  std::string received;
  std::thread thread;
  explicit OneShotServer(std::string status) {
    listener = listenOn(resolve("127.0.0.1", 0, "test")[0], 4, "test");
    port = localAddress(listener.get()).port();
    thread = std::thread([this, status] {
      Fd c(::accept(listener.get(), nullptr, nullptr));
      char buf[4096];
      for (;;) {
        const ssize_t n = ::read(c.get(), buf, sizeof buf);
        if (n <= 0) break;
        received.append(buf, static_cast<std::size_t>(n));
        const auto head = received.find("\r\n\r\n");
        if (head != std::string::npos) {
          const auto cl = received.find("Content-Length: ");
          const std::size_t len = std::stoul(received.substr(cl + 16));
          if (received.size() >= head + 4 + len) break;
        }
      }
      const std::string reply = "HTTP/1.1 " + status + "\r\nContent-Length: 0\r\n\r\n";
      [[maybe_unused]] auto w = ::write(c.get(), reply.data(), reply.size());
    });
  }
  ~OneShotServer() {
    if (thread.joinable()) thread.join();
  }
};

TEST(Pushgateway, PutsTheBodyAndReportsRefusals) {
  {
    OneShotServer s("200 OK");
    push(pushTarget("http://127.0.0.1:" + std::to_string(s.port), "kumi-netcheck", {}), "m 1\n", 5);
    s.thread.join();
    EXPECT_EQ(s.received.rfind("PUT /metrics/job/kumi-netcheck HTTP/1.1\r\n", 0), 0u) << s.received;
    EXPECT_NE(s.received.find("\r\n\r\nm 1\n"), std::string::npos);
  }
  {
    OneShotServer s("400 Bad Request");
    try {
      push(pushTarget("http://127.0.0.1:" + std::to_string(s.port), "j", {}), "bad", 5);
      FAIL() << "a 400 was taken for success";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("400 Bad Request"), std::string::npos) << e.what();
    }
  }
  // Nobody listening: a clear error naming the address, not a hang.
  Fd probe = listenOn(resolve("127.0.0.1", 0, "test")[0], 1, "test");
  const int closedPort = localAddress(probe.get()).port();
  probe.reset();
  try {
    push(pushTarget("http://127.0.0.1:" + std::to_string(closedPort), "j", {}), "x", 2);
    FAIL() << "pushing to a closed port succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
  }
}

TEST(BaselineFile, RoundTripAndClearErrors) {
  const auto links = cluster(3, 2, 1.1, [](int, int, int) { return 1.0; });
  const std::string text = formatBaseline(links, names(3));
  const Baseline b = parseBaseline(text, "base.txt");
  ASSERT_EQ(b.size(), links.size());
  const auto& got = b.at({"node-1", "node-2", 1, "tcp"});
  EXPECT_NEAR(got.bandwidth, links[9].bandwidth, links[9].bandwidth * 1e-5);  // rail 1, 1 -> 2
  EXPECT_NEAR(got.latency, 20e-6, 1e-10);
  auto refused = [](const std::string& t, const std::string& needle) {
    try {
      parseBaseline(t, "base.txt");
      return std::string("accepted");
    } catch (const Error& e) {
      const std::string m = e.what();
      return m.find(needle) != std::string::npos ? std::string() : m;
    }
  };
  const std::string head = "# kumi-netcheck baseline v1\n";
  EXPECT_EQ(refused("", "empty"), "");
  EXPECT_EQ(refused("{\"json\": 1}\n", "is not a kumi-netcheck baseline"), "");
  EXPECT_EQ(refused(head + "a b 0 tcp 1e9\n", "base.txt:2: expected"), "");
  EXPECT_EQ(refused(head + "a b 0 tcp 1e9 1e-5 x\n", "base.txt:2: expected"), "");
  EXPECT_EQ(refused(head + "a b x tcp 1e9 1e-5\n", "rail 'x'"), "");
  EXPECT_EQ(refused(head + "a b 0 tcp fast 1e-5\n", "bandwidth 'fast'"), "");
  EXPECT_EQ(refused(head + "a b 0 tcp -1 1e-5\n", "bandwidth '-1'"), "");
  EXPECT_EQ(refused(head + "a b 0 tcp 1 1\na b 0 tcp 1 1\n", "appears twice"), "");
  EXPECT_THROW(loadBaseline("/nonexistent/baseline"), Error);
}

TEST(Options, DurationsSizesAndRefusals) {
  EXPECT_EQ(parseDuration("--budget", "90"), 90);
  EXPECT_EQ(parseDuration("--budget", "90s"), 90);
  EXPECT_EQ(parseDuration("--budget", "5m"), 300);
  EXPECT_EQ(parseDuration("--budget", "1h"), 3600);
  EXPECT_EQ(parseDuration("--budget", "1m30s"), 90);
  EXPECT_EQ(parseDuration("--budget", "0.5s"), 0.5);
  for (const char* bad : {"", "5x", "m", "-5m", "0s", "5m30"}) EXPECT_THROW(parseDuration("--budget", bad), Error) << bad;
  const Options o = parseOptions({"--budget", "2m", "--bytes", "1M", "--repeats", "3", "--allreduce-sizes", "64K,4M",
                                  "--algos", "ring,tree", "--threshold", "tcp=1.0:50", "--group", "cluster=a/b",
                                  "--pushgateway", "http://127.0.0.1:9091", "--no-intra-node"});
  EXPECT_EQ(o.budgetSeconds, 120);
  EXPECT_EQ(o.p2p.bytes, 1u << 20);
  EXPECT_EQ(o.p2p.repeats, 3);
  EXPECT_EQ(o.sweep.sizes, (std::vector<std::uint64_t>{64 << 10, 4 << 20}));
  EXPECT_EQ(o.sweep.algorithms, (std::vector<std::string>{"ring", "tree"}));
  EXPECT_EQ(o.analysis.thresholds.at("tcp").bandwidth, 1e9);
  EXPECT_NEAR(o.analysis.thresholds.at("tcp").latency, 50e-6, 1e-12);
  EXPECT_EQ(o.grouping.at(0).second, "a/b");
  EXPECT_FALSE(o.intraNode);
  EXPECT_TRUE(parseOptions({"--allreduce-sizes", "none"}).sweep.sizes.empty());
  EXPECT_EQ(parseOptions({}).sweep.algorithms, allAllreduceAlgorithms());
  auto refused = [](std::vector<std::string> args, const std::string& needle) {
    try {
      parseOptions(args);
      return std::string("accepted");
    } catch (const Error& e) {
      return std::string(e.what()).find(needle) != std::string::npos ? std::string() : std::string(e.what());
    }
  };
  EXPECT_EQ(refused({"--repeats", "0"}, "--repeats"), "");
  EXPECT_EQ(refused({"--repeats", "65"}, "--repeats"), "");  // every sample must fit the record sent to rank 0
  EXPECT_EQ(refused({"--repeats", "2.5"}, "whole number"), "");
  EXPECT_EQ(refused({"--bytes", "lots"}, "not a size"), "");
  EXPECT_EQ(refused({"--threshold", "tcp"}, "TRANSPORT=GBPS"), "");
  EXPECT_EQ(refused({"--threshold", "tcp=fast"}, "not a number"), "");
  EXPECT_EQ(refused({"--group", "novalue"}, "LABEL=VALUE"), "");
  EXPECT_EQ(refused({"--job", "a/b"}, "without '/'"), "");
  EXPECT_EQ(refused({"--budget"}, "needs a value"), "");
  EXPECT_EQ(refused({"--frobnicate"}, "unknown argument"), "");
}

TEST(Report, MetricsJsonTextAndExitCode) {
  auto links = cluster(3, 1, 1.1, [](int s, int d, int) { return s == 2 || d == 2 ? 0.2 : 1.0; });
  RunInfo run;
  run.nodeNames = names(3);
  run.ranks = 3;
  run.seconds = 12.5;
  run.startedAt = 1.8e9;
  std::vector<AllreduceRow> sweep{{"auto", "ring", 1 << 20, 900, 1.5e9}, {"tree", "tree", 1 << 20, 1100, 1.2e9}};
  // Three nodes, one slow: both ends of each slow link have two peers, node-2 all of its links slow.
  const Analysis a = analyse(links, run.nodeNames, {}, {});
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_EQ(exitCode(a, run), 1);
  const std::string m = exposition(metricFamilies(a, sweep, run));
  for (const char* needle :
       {"kumi_netcheck_p2p_bandwidth_bytes_per_second{src_node=\"node-0\",dst_node=\"node-1\",transport=\"tcp\",rail=\"0\"}",
        "kumi_netcheck_allreduce_busbw_bytes_per_second{algorithm=\"tree\",size=\"1048576\"} 1200000000",
        "kumi_netcheck_node_healthy{node=\"node-2\"} 0", "kumi_netcheck_node_healthy{node=\"node-0\"} 1",
        "kumi_netcheck_findings{scope=\"node\",severity=\"critical\"} 1", "kumi_netcheck_exit_code 1",
        "kumi_netcheck_complete 1", "kumi_netcheck_nodes 3"})
    EXPECT_NE(m.find(needle), std::string::npos) << needle << "\n" << m;
  const std::string j = jsonReport(a, sweep, run);
  EXPECT_NE(j.find("\"exit_code\": 1"), std::string::npos) << j;
  EXPECT_NE(j.find("\"scope\": \"node\""), std::string::npos);
  EXPECT_NE(j.find("\"node\": \"node-2\""), std::string::npos);
  const std::string t = textReport(a, sweep, run);
  EXPECT_NE(t.find("SLOW"), std::string::npos);
  EXPECT_NE(t.find("critical (node): node node-2"), std::string::npos) << t;
  run.failure = "measurement stopped: rank 2 left";
  EXPECT_EQ(exitCode(a, run), 2);
  EXPECT_NE(textReport(a, sweep, run).find("FAILED: measurement stopped"), std::string::npos);
  EXPECT_EQ(exitCode(analyse(cluster(3, 1, 1.1, [](int, int, int) { return 1.0; }), run.nodeNames, {}, {}), RunInfo{}), 0);
}

}  // namespace
}  // namespace kumi::netcheck
