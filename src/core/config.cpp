#include "core/config.hpp"

#include <algorithm>
#include <cstdint>

#include "core/env.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/secret.hpp"
#include "core/socket.hpp"

namespace kumi {

Config Config::resolve(const kumiConfig_t* user) {
  Config c;
  // Rank, world size, store, job id and generation: from whichever launcher started this process
  // (explicit KUMI_* win over it). A contradictory environment is an error only when the caller
  // did not say who this rank is: then it would decide what the job looks like.
  const bool callerPlacesRank = user != nullptr && user->rank >= 0 && user->worldSize >= 0 && user->storeAddr;
  try {
    c.applyLaunch(launch::detectFromProcess());
  } catch (const Error& e) {
    if (!callerPlacesRank) throw;
    KUMI_WARN("launch detection ignored (the caller gave rank, world size and store): ", e.what());
  }
  if (auto v = envIntIn("KUMI_STORE_SERVE", 0, 1)) c.storeServe = *v;
  c.secret = secretFromEnv();
  if (auto v = envDouble("KUMI_TIMEOUT")) c.timeoutSeconds = *v;
  if (auto v = envString("KUMI_SOCKET_IFNAME")) c.socketIfname = *v;
  if (auto v = envIntIn("KUMI_SOCKET_NSOCKS", 0, 16)) c.socketsPerPeer = *v;
  if (auto v = envBytes("KUMI_SOCKET_BUFFER")) c.socketBufferBytes = *v;
  if (auto v = envBytes("KUMI_CHUNK_SIZE")) c.chunkBytes = *v;
  if (auto v = envString("KUMI_ALGO")) c.algo = *v;
  if (auto v = envString("KUMI_TUNING_FILE")) c.tuningFile = *v;
  if (auto v = envString("KUMI_TRANSPORT")) c.transport = *v;
  if (auto v = envString("KUMI_HOSTID")) c.hostId = *v;
  if (auto v = envString("KUMI_SHM_DIR")) c.shmDir = *v;
  if (auto v = envBytes("KUMI_SHM_BUFFER")) c.shmBufferBytes = *v;
  if (auto v = envIntIn("KUMI_SHM_CMA", 0, 1)) c.shmCrossMemory = *v;
  if (auto v = envIntIn("KUMI_CUDA_IPC", 0, 1)) c.cudaIpc = *v;
  if (auto v = envIntIn("KUMI_SPIN", 0, 1000000)) c.spinBeforeBlock = *v;
  if (auto v = envIntIn("KUMI_CHECKSUM", 0, 1)) c.checksum = *v;
  if (auto v = envIntIn("KUMI_HEARTBEAT", 0, 3600)) c.heartbeatSeconds = *v;
  if (auto v = envIntIn("KUMI_TEST_CORRUPT_EVERY", 0, 1 << 30)) c.testCorruptEvery = static_cast<std::uint32_t>(*v);
  if (auto v = envIntIn("KUMI_FLIGHT_RECORDER", 0, 1 << 20)) c.flightRecorderEntries = *v;
  if (auto v = envString("KUMI_FLIGHT_RECORDER_SIGNAL")) c.flightRecorderSignal = *v;
  // Dumps go to the temporary directory unless told otherwise; "none": to the log only.
  if (auto v = envString("KUMI_FLIGHT_RECORDER_DIR")) c.flightRecorderDir = *v == "none" ? "" : *v;
  else if (auto t = envString("TMPDIR"); t && !t->empty()) c.flightRecorderDir = *t;
  else c.flightRecorderDir = "/tmp";

  if (user != nullptr) {
    if (user->structSize != sizeof(kumiConfig_t))
      fail(kumiInvalidArgument, "kumiConfig_t.structSize is ", user->structSize, ", expected ",
           sizeof(kumiConfig_t), ": initialise the struct with KUMI_CONFIG_INITIALIZER");
    if (user->rank >= 0) c.rank = user->rank;
    if (user->worldSize >= 0) c.worldSize = user->worldSize;
    if (user->storeAddr) c.store = user->storeAddr;
    if (user->storeServe >= 0) c.storeServe = user->storeServe;
    if (user->jobId) c.jobId = user->jobId;
    if (user->generation >= 0) c.generation = user->generation;
    if (user->timeoutSeconds > 0) c.timeoutSeconds = user->timeoutSeconds;
    if (user->socketIfname) c.socketIfname = user->socketIfname;
  }
  if (c.jobId.empty()) c.jobId = "kumi";
  return c;
}

void Config::applyLaunch(const launch::LaunchInfo& l) {
  if (!l.detected()) return;
  constexpr long long kMaxRanks = 1 << 24;
  if (l.worldSize && *l.worldSize > kMaxRanks)
    fail(kumiInvalidArgument, "world size ", *l.worldSize, " (", l.worldSize.source, ") exceeds kumi's limit of ", kMaxRanks);
  if (l.rank) rank = static_cast<int>(*l.rank);
  if (l.worldSize) worldSize = static_cast<int>(*l.worldSize);
  if (l.coordinatorHost) {
    const std::string& host = *l.coordinatorHost;
    if (host.rfind("file://", 0) == 0 || !l.coordinatorPort) store = host;
    else store = joinHostPort(host, static_cast<int>(*l.coordinatorPort));
  }
  if (l.jobId) jobId = *l.jobId;
  if (l.generation) {
    if (*l.generation > INT32_MAX)
      fail(kumiInvalidArgument, "generation ", *l.generation, " (", l.generation.source, ") is too large");
    generation = static_cast<int>(*l.generation);
  }
  if (l.incarnation) incarnation = static_cast<int>(std::min<long long>(*l.incarnation, INT32_MAX));
  launcher = l.launcher;
  if (l.nodeHost) {
    // Launchers number ranks node by node, localSize at a time.
    const long long perNode = l.localSize ? std::max(1LL, *l.localSize) : 1;
    rankHost = [name = l.nodeHost, perNode](int r) { return name(r / perNode); };
  }
  KUMI_INFO("launch: ", l.launcher, l.outerLaunchers.empty() ? "" : " (inside ", l.outerLaunchers.empty() ? "" : l.outerLaunchers.front(),
            l.outerLaunchers.empty() ? "" : ")", ": rank ", rank, " (", l.rank.source, ") of ", worldSize, " (",
            l.worldSize.source, "), store ", store.empty() ? "?" : store,
            l.coordinatorHost ? cat(" (", l.coordinatorHost.source, ")") : std::string(), ", job ", jobId.empty() ? "kumi" : jobId,
            ", generation ", generation);
}

void Config::validate() const {
  KUMI_REQUIRE_ARG(worldSize >= 1, "world size is ", worldSize,
                   ": set KUMI_WORLD_SIZE (or run under kumirun) to a positive number");
  KUMI_REQUIRE_ARG(rank >= 0 && rank < worldSize, "rank ", rank, " is outside the world of size ",
                   worldSize, " (KUMI_RANK must be in [0, ", worldSize, "))");
  KUMI_REQUIRE_ARG(worldSize == 1 || !store.empty(),
                   "no rendezvous store: set KUMI_STORE=host:port (rank 0 serves it) or run under kumirun");
  KUMI_REQUIRE_ARG(timeoutSeconds > 0, "KUMI_TIMEOUT must be positive, got ", timeoutSeconds);
  KUMI_REQUIRE_ARG(generation >= 0, "KUMI_GENERATION must be >= 0, got ", generation);
  KUMI_REQUIRE_ARG(socketsPerPeer >= 0 && socketsPerPeer <= 16, "KUMI_SOCKET_NSOCKS must be in [0, 16], got ",
                   socketsPerPeer);
  KUMI_REQUIRE_ARG(storeServe >= -1 && storeServe <= 1, "KUMI_STORE_SERVE must be 0 or 1, got ", storeServe);
  // At most 16 MiB: kumi keeps at least two staging slices, within its 32 MiB budget.
  KUMI_REQUIRE_ARG(chunkBytes == 0 || (chunkBytes >= 4096 && chunkBytes <= (16u << 20)),
                   "KUMI_CHUNK_SIZE must be between 4K and 16M, got ", chunkBytes);
  KUMI_REQUIRE_ARG(transport.empty() || transport == "auto" || transport == "tcp" || transport == "ib", "KUMI_TRANSPORT='",
                   transport, "' is not known: use auto (shared memory within a host, RDMA where both ends have a ",
                   "port, tcp otherwise), tcp, or ib (RDMA to every peer, even on the same host)");
  KUMI_REQUIRE_ARG(shmBufferBytes >= (64u << 10) && shmBufferBytes <= (64u << 20),
                   "KUMI_SHM_BUFFER must be between 64K and 64M, got ", shmBufferBytes);
  KUMI_REQUIRE_ARG(!shmDir.empty() && shmDir[0] == '/', "KUMI_SHM_DIR must be an absolute directory, got '", shmDir, "'");
}

}  // namespace kumi
