// Kubernetes gang-job controllers without a per-process launcher of their own: Indexed Job,
// JobSet, LeaderWorkerSet and Volcano. Each describes the pod (a node to kumi); with one process
// per pod that is also the rank. None gives a port: kumi's convention applies (docs/LAUNCH.md).
#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "launch/launchers.hpp"

namespace kumi::launch {

std::optional<std::string> podDnsSuffix(const Context& ctx) {
  if (ctx.hostname().empty() || !ctx.files().read) return std::nullopt;
  auto hosts = ctx.files().read("/etc/hosts");
  if (!hosts) return std::nullopt;
  std::istringstream lines(*hosts);
  std::string line;
  const std::string prefix = ctx.hostname() + ".";
  while (std::getline(lines, line)) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string word;
    while (words >> word)
      if (word.size() > prefix.size() && word.compare(0, prefix.size(), prefix) == 0)
        return word.substr(ctx.hostname().size());
  }
  return std::nullopt;
}

namespace {

// "<prefix>-<index>" -> prefix, when the hostname ends with that index.
std::optional<std::string> stripIndex(const std::string& hostname, long long index) {
  std::string tail = cat("-", index);  // not "-" + to_string: gcc 12 -Wrestrict false positive
  if (hostname.size() <= tail.size() || hostname.compare(hostname.size() - tail.size(), tail.size(), tail) != 0)
    return std::nullopt;
  return hostname.substr(0, hostname.size() - tail.size());
}

std::string firstLabel(const std::string& host) { return host.substr(0, host.find('.')); }

}  // namespace

// Kubernetes Indexed Job (batch/v1, completionMode: Indexed): the Job controller sets
// JOB_COMPLETION_INDEX (and the annotation batch.kubernetes.io/job-completion-index) and the pod
// hostname "<job>-<index>"; with spec.subdomain naming a headless Service, the pod resolves as
// <job>-<index>.<subdomain>. The Job API gives the pod nothing that holds spec.completions, so
// the world size must be given: KUMI_WORLD_SIZE (the manifests of deploy/kubernetes/ set it).
Launcher indexedJob() {
  return Launcher{
      "k8s-indexed-job", Scope::Pod,
      [](const Context& c) {
        return c.has("JOB_COMPLETION_INDEX") && !c.has("JOBSET_NAME") && !c.has("PET_NODE_RANK");
      },
      // The per-index failure count (annotation batch.kubernetes.io/job-index-failure-count, set
      // with backoffLimitPerIndex), mapped by the downward API: a replaced pod carries a higher one.
      {{"JOB_COMPLETION_INDEX", Field::NodeRank, Parse::Index},
       {"JOB_INDEX_FAILURE_COUNT", Field::Incarnation, Parse::Index}},
      [](const Context& c, LaunchInfo& info) {
        auto job = stripIndex(c.hostname(), *info.nodeRank);
        if (!job) return;  // hostNetwork pods carry the node's name: no coordinator from it
        info.jobId.set(*job, "hostname");
        info.nodeHost = [name = *job](long long n) { return cat(name, '-', n); };
        info.nodeHostSource = "hostname <job>-<index>";
        // Index 0's name: only resolvable through the subdomain, which /etc/hosts reveals.
        if (auto suffix = podDnsSuffix(c)) info.coordinatorHost.set(*job + "-0" + *suffix, "hostname + /etc/hosts");
      },
      "the Job API does not give pods spec.completions: set KUMI_WORLD_SIZE (completions x processes per pod)"};
}

// JobSet (jobset.x-k8s.io): each replicated job is an Indexed Job, so pods get
// JOB_COMPLETION_INDEX and hostname "<jobset>-<replicatedJob>-<jobIndex>-<podIndex>", and the
// JobSet's headless Service is its subdomain (network.subdomain, default the JobSet name). The
// controller puts labels/annotations jobset.sigs.k8s.io/jobset-name, replicatedjob-name,
// job-index and restart-attempt on the pods, but no variables: the manifest maps them with the
// downward API to JOBSET_NAME, REPLICATED_JOB_NAME, JOB_INDEX and JOBSET_RESTART_ATTEMPT (the
// names the JobSet integrations of Metaflow and Flyte use). JOBSET_NAME marks a JobSet pod.
// Pod index across jobs: JOB_INDEX x KUMI_PODS_PER_JOB + JOB_COMPLETION_INDEX; one replicated
// job forms the ranks (several, e.g. a leader job and a worker job: set KUMI_RANK).
Launcher jobSet() {
  return Launcher{
      "jobset", Scope::Pod,
      [](const Context& c) { return c.has("JOBSET_NAME"); },
      {{"JOBSET_NAME", Field::JobId, Parse::Text},
       {"JOBSET_RESTART_ATTEMPT", Field::Generation, Parse::Index},
       {"JOB_INDEX_FAILURE_COUNT", Field::Incarnation, Parse::Index}},
      [](const Context& c, LaunchInfo& info) {
        auto podText = c.get("JOB_COMPLETION_INDEX");
        if (!podText)
          fail(kumiInvalidArgument, "JobSet pod (JOBSET_NAME=", *c.get("JOBSET_NAME"),
               ") without JOB_COMPLETION_INDEX: its jobs must be Indexed (JobSet makes them so)");
        long long pod = parseNumber("JOB_COMPLETION_INDEX", *podText, 0, 1ll << 30);
        const std::string jobset = *c.get("JOBSET_NAME");
        std::optional<std::string> rjob = c.get("REPLICATED_JOB_NAME");
        std::optional<long long> job;
        if (auto j = c.get("JOB_INDEX")) job = parseNumber("JOB_INDEX", *j, 0, 1ll << 30);
        // The hostname says the same; when it has the JobSet's shape, both must agree.
        const std::string& host = c.hostname();
        if (auto rest = stripIndex(host, pod); rest && host.rfind(jobset + "-", 0) == 0) {
          auto dash = rest->rfind('-');
          std::string jobText = dash == std::string::npos ? "" : rest->substr(dash + 1);
          if (dash != std::string::npos && dash > jobset.size() &&
              jobText.find_first_not_of("0123456789") == std::string::npos && !jobText.empty()) {
            long long hostJob = std::stoll(jobText);
            std::string hostRjob = rest->substr(jobset.size() + 1, dash - jobset.size() - 1);
            if (job && *job != hostJob)
              fail(kumiInvalidArgument, "JobSet: JOB_INDEX=", *job, " but hostname ", host, " says job ", hostJob);
            if (rjob && *rjob != hostRjob)
              fail(kumiInvalidArgument, "JobSet: REPLICATED_JOB_NAME=", *rjob, " but hostname ", host, " says ",
                   hostRjob);
            job = hostJob;
            rjob = hostRjob;
          }
        }
        if (!job) fail(kumiInvalidArgument, "JobSet: no JOB_INDEX, and hostname '", host,
                       "' is not <jobset>-<job>-<jobIndex>-<podIndex>");
        std::optional<long long> perJob;
        if (auto per = c.get("KUMI_PODS_PER_JOB")) perJob = parseNumber("KUMI_PODS_PER_JOB", *per, 1, 1ll << 30);
        if (rjob) {
          // Pod n of the replicated job: child job n / per, index n % per (one child job if per is unknown).
          info.nodeHost = [prefix = jobset + "-" + *rjob, perJob](long long n) {
            return perJob ? cat(prefix, '-', n / *perJob, '-', n % *perJob) : cat(prefix, "-0-", n);
          };
          info.nodeHostSource = "<jobset>-<replicatedJob>-<jobIndex>-<podIndex>";
        }
        if (*job == 0) {
          info.nodeRank.set(pod, "JOB_COMPLETION_INDEX");
        } else {
          auto per = c.get("KUMI_PODS_PER_JOB");
          if (!per)
            fail(kumiInvalidArgument, "JobSet: JOB_INDEX=", *job,
                 " > 0: set KUMI_PODS_PER_JOB (the replicated job's completions) to number the pods across jobs, ",
                 "or KUMI_RANK");
          long long n = parseNumber("KUMI_PODS_PER_JOB", *per, 1, 1ll << 30);
          if (pod >= n) fail(kumiInvalidArgument, "JobSet: JOB_COMPLETION_INDEX=", pod,
                             " is not below KUMI_PODS_PER_JOB=", n);
          info.nodeRank.set(*job * n + pod, "JOB_INDEX*KUMI_PODS_PER_JOB+JOB_COMPLETION_INDEX");
        }
        if (rjob) {
          std::string suffix = podDnsSuffix(c).value_or("." + jobset);
          info.coordinatorHost.set(jobset + "-" + *rjob + "-0-0" + suffix, "JOBSET_NAME + REPLICATED_JOB_NAME");
        }
      },
      "JobSet gives pods no count of them: set KUMI_WORLD_SIZE (replicas x completions x processes per pod)"};
}

// LeaderWorkerSet (leaderworkerset.x-k8s.io, api/leaderworkerset/v1 constants): every container
// of a group gets LWS_LEADER_ADDRESS (the leader pod's DNS name), LWS_GROUP_SIZE and
// LWS_WORKER_INDEX (0 for the leader). A group is one job: the leader's address names it.
Launcher leaderWorkerSet() {
  return Launcher{
      "leaderworkerset", Scope::Pod,
      [](const Context& c) { return c.has("LWS_WORKER_INDEX"); },
      {{"LWS_WORKER_INDEX", Field::NodeRank, Parse::Index},
       {"LWS_GROUP_SIZE", Field::NodeCount, Parse::Count},
       {"LWS_LEADER_ADDRESS", Field::Host, Parse::Text},
       {"LWS_LEADER_ADDRESS", Field::JobId, Parse::Text}},
      [](const Context&, LaunchInfo& info) {
        // The leader pod is "<lws>-<group>", worker i "<lws>-<group>-<i>"; the address's first label is the leader's name.
        if (!info.coordinatorHost) return;
        info.nodeHost = [leader = firstLabel(*info.coordinatorHost)](long long n) {
          return n == 0 ? leader : cat(leader, '-', n);
        };
        info.nodeHostSource = "LWS_LEADER_ADDRESS";
      }};
}

namespace {

struct VolcanoTask {
  std::vector<std::string> hosts;
  std::string hostsSource;
  std::optional<long long> num;
  std::string numSource;
};

std::string envKey(std::string task) {  // the svc plugin's VC_<TASK>_HOSTS spelling
  for (char& ch : task) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return task;
}

std::vector<std::string> splitHosts(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, sep)) {
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.pop_back();
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.erase(0, 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Tasks by VC_<TASK>_HOSTS / VC_<TASK>_NUM and /etc/volcano/<task>.host; the variables win.
std::map<std::string, VolcanoTask> volcanoTasks(const Context& c) {
  std::map<std::string, VolcanoTask> tasks;
  for (const auto& [name, value] : c.env()) {
    if (name.rfind("VC_", 0) != 0 || value.empty()) continue;
    if (name.size() > 9 && name.compare(name.size() - 6, 6, "_HOSTS") == 0) {
      auto& t = tasks[name.substr(3, name.size() - 9)];
      t.hosts = splitHosts(value, ',');
      t.hostsSource = name;
    } else if (name.size() > 7 && name.compare(name.size() - 4, 4, "_NUM") == 0) {
      auto& t = tasks[name.substr(3, name.size() - 7)];
      t.num = parseNumber(name, value, 1, 1ll << 30);
      t.numSource = name;
    }
  }
  if (c.files().listDir && c.files().read) {
    for (const auto& file : c.files().listDir("/etc/volcano")) {
      if (file.size() <= 5 || file.compare(file.size() - 5, 5, ".host") != 0) continue;
      auto& t = tasks[envKey(file.substr(0, file.size() - 5))];
      if (!t.hosts.empty()) continue;
      if (auto text = c.files().read("/etc/volcano/" + file)) {
        t.hosts = splitHosts(*text, '\n');
        t.hostsSource = "/etc/volcano/" + file;
      }
    }
  }
  return tasks;
}

}  // namespace

// Volcano (batch.volcano.sh Job): the env plugin sets VC_TASK_INDEX (and the older
// VK_TASK_INDEX), the pod's index within its task; the svc plugin sets VC_<TASK>_HOSTS (the
// pods' DNS names "<job>-<task>-<i>.<job>", comma-separated), VC_<TASK>_NUM, and mounts the
// same lists as /etc/volcano/<task>.host. Pods are named and hosted "<job>-<task>-<i>". Tasks
// are numbered in the order of Volcano's pytorch plugin: a task named "master" first, then the
// others by name; the first task's first host is the coordinator.
Launcher volcano() {
  return Launcher{
      "volcano", Scope::Pod,
      [](const Context& c) { return c.has("VC_TASK_INDEX") || c.has("VK_TASK_INDEX"); },
      {{"VC_TASK_INDEX", Field::NodeRank, Parse::Index}, {"VK_TASK_INDEX", Field::NodeRank, Parse::Index}},
      [](const Context& c, LaunchInfo& info) {
        if (auto vk = c.get("VK_TASK_INDEX"); vk && c.has("VC_TASK_INDEX") &&
                                              parseNumber("VK_TASK_INDEX", *vk, 0, 1ll << 30) != *info.nodeRank)
          fail(kumiInvalidArgument, "Volcano: VC_TASK_INDEX=", *info.nodeRank, " but VK_TASK_INDEX=", *vk);
        const long long index = *info.nodeRank;
        std::vector<std::pair<std::string, VolcanoTask>> tasks;
        for (auto& [name, t] : volcanoTasks(c)) {
          if (t.hosts.empty())
            fail(kumiInvalidArgument, "Volcano: ", t.numSource, " is set but no VC_", name,
                 "_HOSTS nor /etc/volcano host file");
          if (t.num && *t.num != static_cast<long long>(t.hosts.size()))
            fail(kumiInvalidArgument, "Volcano: ", t.numSource, "=", *t.num, " but ", t.hostsSource, " lists ",
                 t.hosts.size(), " hosts");
          tasks.emplace_back(name, std::move(t));
        }
        if (tasks.empty()) return;  // env plugin only: the index, nothing to number across tasks
        std::stable_partition(tasks.begin(), tasks.end(), [](const auto& t) { return t.first == "MASTER"; });
        long long offset = 0, total = 0;
        std::optional<long long> mine;
        std::vector<std::string> allHosts;
        for (const auto& [name, t] : tasks)
          for (const auto& h : t.hosts) allHosts.push_back(firstLabel(h));
        info.nodeHost = [allHosts](long long n) {
          return n >= 0 && n < static_cast<long long>(allHosts.size()) ? allHosts[static_cast<std::size_t>(n)] : std::string();
        };
        info.nodeHostSource = "VC_*_HOSTS";
        for (const auto& [name, t] : tasks) {
          bool listed = std::any_of(t.hosts.begin(), t.hosts.end(),
                                    [&](const std::string& h) { return firstLabel(h) == c.hostname(); });
          if (listed || (tasks.size() == 1 && !mine)) {
            if (index >= static_cast<long long>(t.hosts.size()))
              fail(kumiInvalidArgument, "Volcano: VC_TASK_INDEX=", index, " but ", t.hostsSource, " lists ",
                   t.hosts.size(), " hosts");
            if (listed && firstLabel(t.hosts[index]) != c.hostname())
              fail(kumiInvalidArgument, "Volcano: VC_TASK_INDEX=", index, " but hostname ", c.hostname(),
                   " is not entry ", index, " of ", t.hostsSource, " (", t.hosts[index], ")");
            mine = offset + index;
          }
          offset += static_cast<long long>(t.hosts.size());
          total += static_cast<long long>(t.hosts.size());
        }
        if (!mine)
          fail(kumiInvalidArgument, "Volcano: hostname ", c.hostname(),
               " is in none of the tasks' host lists (VC_*_HOSTS)");
        info.nodeRank.set(*mine, tasks.size() == 1 ? info.nodeRank.source : "VC_TASK_INDEX + earlier tasks");
        info.nodeCount.set(total, tasks.size() == 1 ? tasks[0].second.hostsSource : "VC_*_HOSTS");
        info.coordinatorHost.set(tasks[0].second.hosts[0], tasks[0].second.hostsSource + "[0]");
      }};
}

}  // namespace kumi::launch
