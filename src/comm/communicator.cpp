#include "comm/communicator.hpp"

#include <sched.h>

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

#include "collectives/algorithms.hpp"
#include "collectives/link_model.hpp"
#include "comm/call_stamp.hpp"
#include "comm/flight_dumper.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "core/types.hpp"
#include "rendezvous/bootstrap.hpp"
#include "rendezvous/join.hpp"
#include "core/env.hpp"
#include "topology/host_id.hpp"
#if KUMI_HAVE_HWLOC
#include "topology/binding.hpp"
#endif
#include "transports/routed_transport.hpp"
#include "transports/shm/shm_transport.hpp"
#include "transports/tcp/tcp_transport.hpp"
#if KUMI_HAVE_IBVERBS
#include "transports/ib/ib_transport.hpp"
#endif
#if KUMI_HAVE_HWLOC
#include "comm/device_links.hpp"
#include "topology/machine_loader.hpp"
#include "topology/rails.hpp"
#endif

namespace kumi {

namespace {
// Largest message kumi accepts, in bytes: far beyond any memory, small enough that offsets
// never overflow. A negative count cast to size_t lands above it.
constexpr std::uint64_t kMaxBytes = 1ull << 56;
constexpr std::size_t kScheduleCacheLimit = 256;

// KUMI_BIND, once per process (the first communicator's place on its host decides).
void bindOnce(int rank, int localRank, int localSize) {
#if KUMI_HAVE_HWLOC
  Registry::instance().service<topo::BindOutcome>("cpu-binding", [&] {
    auto outcome = std::make_shared<topo::BindOutcome>(topo::applyBinding(localRank, localSize));
    if (outcome->applied) KUMI_INFO("rank ", rank, ": ", outcome->message);
    return outcome;
  });
#else
  (void)rank, (void)localRank, (void)localSize;
  if (auto v = envString("KUMI_BIND"); v && !v->empty() && *v != "off")
    fail(kumiInvalidArgument, "KUMI_BIND='", *v, "': this kumi was built without hwloc and cannot bind ranks (use off)");
#endif
}

// CPUs this process may run on now.
int cpusOfThisProcess() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
}

#if KUMI_HAVE_HWLOC
// This host as hwloc sees it. The machine does not change while the process runs: loaded once,
// not per communicator.
std::shared_ptr<topo::Machine> localMachine() {
  return Registry::instance().service<topo::Machine>(
      "local-machine", [] { return std::make_shared<topo::Machine>(topo::loadLocalMachine()); });
}
#endif

// What the planner depends on besides the host map, as text: every rank plans from rank 0's so
// that all choose the same schedules even if their files or variables differ.
std::string planningInputs(const Config& cfg) {
  AlgorithmFilter check(cfg.algo);  // a malformed KUMI_ALGO fails init, naming the token
  LinkModel model = cfg.tuningFile.empty() ? LinkModel{} : loadLinkModel(cfg.tuningFile);
  // Ranks that outnumber the cores share them: plan for it.
  if (model.coresPerHost == 0) model.coresPerHost = cpusOfThisProcess();
  // Shared-memory messages beyond the ring wait for their receiver to read them.
  if (model.intraEagerBytes == 0 && cfg.shmCrossMemory && cfg.transport != "tcp")
    model.intraEagerBytes = static_cast<double>(shmEagerBytes(static_cast<std::size_t>(cfg.shmBufferBytes)));
#if KUMI_HAVE_HWLOC
  // Whether a call's buffers fit in the cache changes its cost several times over (docs/PLANNER.md).
  // A communicator of one rank never plans: no topology load at its start.
  if (model.cacheBytes == 0 && cfg.worldSize > 1) {
    try {
      model.cacheBytes = static_cast<double>(topo::lastLevelCacheBytes(*localMachine()));
    } catch (const Error& e) {
      KUMI_INFO("planner: no cache size from hwloc (", e.what(), "); costs assume buffers in memory");
    }
  }
  // Device calls plan for this host's GPU links (NVLink or PCIe) and GPU count.
  if (cfg.worldSize > 1) {
    try {
      putDeviceLinks(*localMachine(), model);
    } catch (const Error& e) {
      KUMI_INFO("planner: no GPU links from hwloc (", e.what(), "); device calls plan with the model's figures");
    }
  }
#endif
  return cat("algo ", cfg.algo, "\nchunk ", cfg.chunkBytes, "\nshm ", cfg.transport == "tcp" ? 0 : 1, "\n",
             formatLinkModel(model));
}

Planners plannerFrom(const std::string& inputs, const std::vector<int>& hostOf) {
  // Three lines of settings, then the link model.
  auto line = [&](std::size_t& pos, const char* key) {
    const auto nl = inputs.find('\n', pos);
    std::string v = inputs.substr(pos + std::strlen(key) + 1, nl - pos - std::strlen(key) - 1);
    pos = nl + 1;
    return v;
  };
  std::size_t pos = 0;
  const std::string algo = line(pos, "algo");
  const std::uint64_t chunk = std::stoull(line(pos, "chunk"));
  const bool shm = line(pos, "shm") == "1";
  const LinkModel model = parseLinkModel(inputs.substr(pos), "planning inputs");
  Planner host(clusterFor(model, hostOf, shm), AlgorithmFilter(algo), chunk);
  Planner device = host.repriced(clusterFor(model, hostOf, shm, /*device=*/true));
  return {std::move(host), std::move(device)};
}

// A failure notice another rank posted, seen while this rank waited: the notice is the story.
class NoticeSeen : public Error {
 public:
  explicit NoticeSeen(std::string notice) : Error(kumiRemoteError, std::move(notice)) {}
};

WireChecks wireChecks(const Config& cfg) { return WireChecks{cfg.checksum != 0, cfg.testCorruptEvery}; }

bool overlaps(const void* a, std::size_t an, const void* b, std::size_t bn) {
  auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return an && bn && pa < pb + bn && pb < pa + an;
}
}  // namespace

std::unique_ptr<Communicator> Communicator::create(const Config& cfg) {
  cfg.validate();
  const auto deadline = Deadline::after(cfg.timeoutSeconds);
  if (Registry::instance().logRank.load() < 0) setLogRank(cfg.rank);
  if (cfg.worldSize == 1) {
    auto c = std::make_unique<Communicator>(cfg, 0, 1, "kumi/local", nullptr, SockAddr{});
    bindOnce(0, 0, 1);
    return c;
  }
  // Only communicators that use the store count: a local one must not shift the namespace.
  const long long index = Registry::instance().rootCommCount.fetch_add(1);
  std::string id = cat("kumi/", cfg.jobId, "/g", cfg.generation, "/c", index);
  StoreConnection sc = connectStore(cfg, deadline);
  enterGeneration(sc.store, cfg.jobId, cfg.generation, cfg.rank, Registry::instance().hostname());
  SockAddr listen = chooseListenAddress(cfg.socketIfname, sc.serverAddress ? &*sc.serverAddress : nullptr);
  auto c = std::make_unique<Communicator>(cfg, cfg.rank, cfg.worldSize, id, sc.store, listen);
  bindOnce(c->rank(), c->world().localRank(c->rank()), c->world().localSize(c->rank()));
  return c;
}

Communicator::Communicator(const Config& cfg, int rank, int size, std::string id, std::shared_ptr<Store> base,
                           const SockAddr& listenAddress, const std::atomic<bool>* cancel, Store* parentStore)
    : cfg_(cfg),
      rank_(rank),
      size_(size),
      id_(std::move(id)),
      base_(std::move(base)),
      listenAddress_(listenAddress) {
  if (cfg_.flightRecorderEntries > 0)
    recorder_ = std::make_shared<FlightRecorder>(
        static_cast<std::size_t>(cfg_.flightRecorderEntries),
        FlightRecorder::Identity{id_, cfg_.jobId, rank_, size_, Registry::instance().hostname()}, cfg_.flightRecorderDir);
  if (recorder_ && !cfg_.flightRecorderSignal.empty()) dumpOnSignal(parseSignal(cfg_.flightRecorderSignal), recorder_);
  if (size_ == 1) {
    world_ = WorldMap({{localHostIdentity(cfg_.hostId, cfg_.shmDir).id, Registry::instance().hostname()}});
    planners_ = plannerFrom(planningInputs(cfg_), world_.hostIndex());
    return;
  }
  const auto deadline = Deadline::after(cfg_.timeoutSeconds);
  store_ = std::make_shared<PrefixStore>(id_, base_);
  try {
    connectTransports(deadline, cancel, parentStore);
  } catch (const Error& e) {
    std::string msg = cat("rank ", rank_, ": ", e.what());
    if (e.code() != kumiRemoteError && !dynamic_cast<const JoinRefused*>(&e)) postAbort(*store_, msg);
    // If this process hosts the store, it leaves with the store: give the other ranks (who
    // poll for the notice twice a second) a moment to read why, instead of a lost store, also
    // when the notice came from another rank and some have not read it yet.
    if (Registry::instance().hosts("store-server:" + cfg_.store))
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    fail(e.code(), msg);
  }
  // The store's load per rank must not grow with the job (docs/KUBERNETES.md, "Start-up"): say it.
  const Store::Requests sent = base_->requests();
  KUMI_INFO("communicator ", id_, ": rank ", rank_, " of ", size_, " ready on ", world_.describe(), "; store requests so far: ",
            sent.total - sent.polls, " (+", sent.polls, " polls while waiting)");
}

void Communicator::connectTransports(const Deadline& deadline, const std::atomic<bool>* cancel, Store* parentStore) {
  const std::string inputs = planningInputs(cfg_);  // bad KUMI_ALGO or tuning file: every rank hears why
  const HostIdentity host = localHostIdentity(cfg_.hostId, cfg_.shmDir);
  KUMI_INFO("rank ", rank_, ": host id ", host.id, " (", host.detail, ")");
  TcpOptions o;
  o.rank = rank_;
  o.worldSize = size_;
  o.jobId = cfg_.jobId;
  o.generation = cfg_.generation;
  o.commId = id_;
  o.socketsPerPeer = cfg_.socketsPerPeer > 0 ? cfg_.socketsPerPeer : 2;
  o.bufferBytes = static_cast<std::size_t>(cfg_.socketBufferBytes);
  o.listenAddress = listenAddress_;
  o.handshakeSeconds = std::min(30.0, cfg_.timeoutSeconds);
  o.secret = cfg_.secret;
  o.checks = wireChecks(cfg_);
  o.heartbeatSeconds = cfg_.heartbeatSeconds;
  // Claim the rank first: a second process given it is refused before it touches anything; a
  // replaced pod takes its earlier incarnation's place, which the barrier counted already.
  const Incarnation me = Incarnation::mine(host.id, cfg_.incarnation);
  const Claim claim = claimRank(*store_, rank_, me, "tcp/all");
  // Agree on the world size before publishing an address: a rank that disagrees must never
  // see a complete set of peers.
  agreeOnWorldSize(*store_, rank_, size_);
  auto tcp = std::make_unique<TcpTransport>(o, store_);
  // Only the world the launcher placed has its pod names (a split renumbers the ranks).
  waitForRanks(*store_, size_, "tcp", deadline, cancel, parentStore, claim == Claim::kNew,
               parentStore ? std::function<std::string(int)>() : cfg_.rankHost);
  confirmClaim(*store_, rank_, me);
  // Where every rank runs travels between the ranks, not through the store, so that the store
  // serves O(1) requests per rank however large the job.
  // Whether this rank has an RDMA port travels with its place, so that every pair agrees on its
  // transport without asking the store.
  const RdmaPlan rdma = planRdma();
  std::vector<RankPlace> places =
      exchangePlaces(*tcp, {host.id, Registry::instance().hostname(), rdma.linkLayer}, deadline, cancel);
  world_ = WorldMap(places);
  if (rank_ == 0) store_->set("plan", inputs);
  const std::vector<int> local = world_.localPeers(rank_);
  // Index 0 is TCP, which every pair can use; shared memory and RDMA take the pairs they can.
  std::vector<std::unique_ptr<Transport>> transports;
  transports.push_back(std::move(tcp));
  std::vector<int> routes(static_cast<std::size_t>(size_), 0);
  if (!local.empty() && cfg_.transport != "tcp" && cfg_.transport != "ib") {
    ShmOptions so;
    so.rank = rank_;
    so.localPeers = local;
    so.dir = cfg_.shmDir;
    so.segmentPrefix = shmSegmentPrefix(cfg_.jobId, cfg_.generation, id_);
    so.channelBytes = static_cast<std::size_t>(cfg_.shmBufferBytes);
    so.crossMemoryAttach = cfg_.shmCrossMemory != 0;
    so.checks = wireChecks(cfg_);
    auto shm = std::make_unique<ShmTransport>(so, *store_, deadline, cancel);
    for (int p : shm->connectedPeers()) routes[static_cast<std::size_t>(p)] = static_cast<int>(transports.size());
    if (!shm->connectedPeers().empty()) {
      sharedMemory_ = true;
      shm_ = shm.get();
      transports.push_back(std::move(shm));
    }
  }
  connectRdma(rdma, places, routes, transports);
  if (transports.size() > 1)
    transport_ = std::make_unique<RoutedTransport>(std::move(transports), std::move(routes));
  else
    transport_ = std::move(transports.front());
  // Rank 0's planning inputs are read before the last barrier: after it rank 0 may return,
  // start calling and die (it serves the store), and a rank still reading would fail its init
  // on a lost store connection instead of its first call naming rank 0 (a fault-injection trial
  // caught this).
  const std::string agreed = rank_ == 0 ? inputs : store_->get("plan", Store::Timeout(std::max(1, deadline.msLeft())));
  // Every rank's transports are up: no rank returns from init while another is failing (e.g.
  // a host whose /dev/shm is too small), and a failure posted meanwhile reaches everyone.
  waitForRanks(*store_, size_, "ready", deadline, cancel, parentStore);
  if (agreed != inputs)
    KUMI_WARN("rank ", rank_, ": KUMI_ALGO, KUMI_CHUNK_SIZE, KUMI_TRANSPORT or KUMI_TUNING_FILE differ from rank 0's;",
              " planning with rank 0's so that every rank runs the same schedules");
  planners_ = plannerFrom(agreed, world_.hostIndex());
}

Communicator::RdmaPlan Communicator::planRdma() const {
  RdmaPlan plan;
  if (cfg_.transport == "tcp") return plan;
#if KUMI_HAVE_IBVERBS
  plan.options = ib::IbOptions::fromEnvironment();
  const IbAvailability a = probeIb(plan.options);
  if (a.usable) {
    plan.linkLayer = a.linkLayer;
    plan.devices = a.devices;
  } else if (cfg_.transport == "ib") {
    fail(kumiSystemError, "KUMI_TRANSPORT=ib but this rank cannot use RDMA: ", a.why);
  } else {
    plan.why = a.why;
  }
#else
  if (cfg_.transport == "ib")
    fail(kumiInvalidArgument, "KUMI_TRANSPORT=ib but this kumi was built without libibverbs");
  plan.why = "this kumi was built without libibverbs";
#endif
  return plan;
}

// Without libibverbs no rank has a link layer, so no peer is taken and `transports` stays as is.
void Communicator::connectRdma(const RdmaPlan& plan, const std::vector<RankPlace>& places, std::vector<int>& routes,
                               [[maybe_unused]] std::vector<std::unique_ptr<Transport>>& transports) {
  // Peers that RDMA takes: every other rank with KUMI_TRANSPORT=ib, else those on other hosts;
  // always only those whose port speaks the same link layer.
  std::vector<int> peers;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_ || (routes[static_cast<std::size_t>(p)] != 0 && cfg_.transport != "ib")) continue;
    const std::string& theirs = places[static_cast<std::size_t>(p)].rdma;
    if (cfg_.transport == "ib" && theirs != plan.linkLayer)
      fail(kumiSystemError, "KUMI_TRANSPORT=ib but rank ", p, " on ", peerName(p),
           theirs.empty() ? std::string(" has no usable RDMA port")
                          : cat(" has a ", theirs, " port and this rank a ", plan.linkLayer, " one"));
    if (!plan.linkLayer.empty() && theirs == plan.linkLayer) peers.push_back(p);
  }
  if (peers.empty()) {
    const bool remote = world_.hosts() > 1;
    if (remote && cfg_.transport != "tcp" && !Registry::instance().toldTcpFallback.exchange(true))
      KUMI_INFO("rank ", rank_, ": TCP between hosts: ",
                plan.why.empty() ? std::string("peers have no RDMA port") : plan.why);
    return;
  }
#if KUMI_HAVE_IBVERBS
  IbTransportOptions io;
  io.rank = rank_;
  io.port = railFor(plan.devices);
  io.ib = plan.options;
  io.checks = wireChecks(cfg_);
  io.gpuPaths = gpuPathsTo(plan.devices[static_cast<std::size_t>(io.port)]);
  auto ib = std::make_unique<IbTransport>(io, *transports.front());  // records travel over TCP
  for (int p : peers) routes[static_cast<std::size_t>(p)] = static_cast<int>(transports.size());
  transports.push_back(std::move(ib));
#endif
}

std::vector<topo::GpuPath> Communicator::gpuPathsTo([[maybe_unused]] const std::string& device) const {
#if KUMI_HAVE_HWLOC
  try {
    return topo::gpuPathsTo(*localMachine(), device);
  } catch (const Error& e) {
    KUMI_INFO("rank ", rank_, ": no topology for GPUDirect RDMA decisions (", e.what(), ")");
  }
#endif
  return {};
}

int Communicator::railFor(const std::vector<std::string>& devices) const {
  const int local = world_.localRank(rank_);
  if (devices.size() <= 1) return 0;
#if KUMI_HAVE_HWLOC
  try {
    const auto machine = localMachine();
    const auto rails = topo::assignRails(*machine, devices, world_.localSize(rank_));
    const auto& mine = rails[static_cast<std::size_t>(local)];
    KUMI_INFO("rank ", rank_, " (local rank ", local, "): RDMA port ", devices[static_cast<std::size_t>(mine.port)],
              ": ", mine.reason);
    return mine.port;
  } catch (const Error& e) {
    KUMI_WARN("rank ", rank_, ": no topology for choosing an RDMA port (", e.what(), "): round robin");
  }
#endif
  return local % static_cast<int>(devices.size());
}

std::uint64_t Communicator::registerBuffer(void* data, std::size_t bytes) {
  KUMI_REQUIRE_ARG(data != nullptr, "kumiCommRegister: the buffer is NULL");
  KUMI_REQUIRE_ARG(bytes > 0, "kumiCommRegister: the buffer has 0 bytes");
  std::lock_guard<std::mutex> lock(opMutex_);  // transports are used under the operation lock
  // Device calls never send from the caller's device buffer (they go through kumi's own device
  // slots, which the NIC reads where GPUDirect RDMA is chosen), so device memory is recorded only.
  gpu::Device* d = gpu::device();
  const gpu::MemoryKind kind = d != nullptr ? d->kindOf(data) : gpu::MemoryKind::Host;
  const bool onDevice = kind == gpu::MemoryKind::Device || kind == gpu::MemoryKind::Managed;
  const std::uint64_t inTransport = transport_ && !onDevice ? transport_->registerBuffer(data, bytes) : 0;
  const std::uint64_t handle = nextRegistration_++;
  registrations_.emplace(handle, inTransport);
  return handle;
}

void Communicator::deregisterBuffer(std::uint64_t handle) {
  std::lock_guard<std::mutex> lock(opMutex_);
  auto it = registrations_.find(handle);
  KUMI_REQUIRE_ARG(it != registrations_.end(), "kumiCommDeregister: handle ", handle,
                   " is not a registration of this communicator (or was deregistered already)");
  if (it->second && transport_) transport_->deregisterBuffer(it->second);
  registrations_.erase(it);
}

std::vector<RankPlace> Communicator::exchangePlaces(TcpTransport& tcp, const RankPlace& mine, const Deadline& deadline,
                                                    const std::atomic<bool>* cancel) {
  // Fixed-size records, so that an allgather of bytes carries them: host id, hostname, address.
  // Knowing every address, a rank needs the store to find no peer, even once the store is gone.
  constexpr std::size_t kField = 256;
  auto put = [&](std::byte* at, const std::string& s, const char* what) {
    KUMI_REQUIRE_ARG(s.size() < kField, what, " '", s.substr(0, 40), "...' is longer than ", kField - 1, " bytes");
    std::memcpy(at, s.data(), s.size());
  };
  const std::size_t record = 4 * kField;
  std::vector<std::byte> all(record * static_cast<std::size_t>(size_));
  std::byte* own = all.data() + record * static_cast<std::size_t>(rank_);
  put(own, mine.hostId, "host id (KUMI_HOSTID)");
  put(own + kField, mine.hostname, "hostname");
  put(own + 2 * kField, tcp.address(), "listen address");
  put(own + 3 * kField, mine.rdma, "RDMA link layer");
  // A ring: each rank connects to two neighbours, whose addresses are two store requests.
  ScheduleKey key{Collective::AllGather, size_, rank_, record, -1, true, false, record};
  PreparedSchedule ps(ringAllGather(key));
  ExecParams p{kumiUint8, kumiSum, size_, cfg_.timeoutSeconds, cancel, [this](int r) { return peerName(r); }};
  p.deadline = deadline;
  p.onLongWait = [this] { checkFailureNotice(); };
  CallArgs args{Collective::AllGather, all.data(), all.data(), record, kumiUint8};
  tcp.connect(ps.peers, deadline);
  tcp.setCallStamp(stampCall(args, 0, rank_));  // number 0: before any call of the user's
  Buffers bufs{all.data() + record * static_cast<std::size_t>(rank_), all.data(), nullptr, 1};
  try {
    executor_.run(ps, bufs, &tcp, p);
  } catch (const NoticeSeen& n) {
    fail(kumiRemoteError, "another rank failed during start-up: ", n.what());
  }
  std::vector<RankPlace> places;
  std::vector<std::string> addresses;
  places.reserve(static_cast<std::size_t>(size_));
  addresses.reserve(static_cast<std::size_t>(size_));
  auto field = [&](int r, std::size_t i) {
    const char* at = reinterpret_cast<const char*>(all.data() + record * static_cast<std::size_t>(r) + i * kField);
    return std::string(at, ::strnlen(at, kField));
  };
  for (int r = 0; r < size_; ++r) {
    places.push_back({field(r, 0), field(r, 1), field(r, 3)});
    addresses.push_back(field(r, 2));
  }
  tcp.learnAddresses(std::move(addresses));
  return places;
}

Communicator::~Communicator() {
  device_.reset();  // runs the calls still queued on device buffers
  if (transport_) transport_->shutdown();
}

std::string Communicator::peerName(int peer) {
  auto it = peerHosts_.find(peer);
  if (it == peerHosts_.end()) {
    std::string host;
    try {
      host = store_->get(cat("host/", peer), Store::Timeout(500));
    } catch (const Error&) {
      host = "?";
    }
    it = peerHosts_.emplace(peer, host).first;
  }
  return cat("rank ", peer, " on ", it->second);
}

std::string Communicator::describe(const CallArgs& a, std::uint64_t seq) const {
  std::string s = cat(collectiveName(a.coll), " #", seq, " (count ", a.count, ' ', typeName(a.type));
  if (a.coll == Collective::AllReduce || a.coll == Collective::ReduceScatter || a.coll == Collective::Reduce)
    s += cat(' ', opName(a.op));
  if (a.coll == Collective::Broadcast || a.coll == Collective::Reduce) s += cat(", root ", a.root);
  if (a.coll == Collective::Send || a.coll == Collective::Recv) s += cat(", peer ", a.root);
  return s + ")";
}

namespace {
// Which buffers a call uses on this rank, and the bytes each must hold.
struct BufferUse {
  bool send = true, recv = true;
  std::uint64_t sendBytes = 0, recvBytes = 0;
};

BufferUse bufferUse(const CallArgs& a, int rank, int size) {
  const std::uint64_t n = static_cast<std::uint64_t>(size);
  BufferUse u;
  u.sendBytes = u.recvBytes = a.count * typeSize(a.type);
  switch (a.coll) {
    case Collective::ReduceScatter: u.sendBytes *= n; break;
    case Collective::AllGather: u.recvBytes *= n; break;
    case Collective::AllToAll: u.sendBytes *= n, u.recvBytes *= n; break;
    case Collective::Broadcast: u.send = rank == a.root; break;
    case Collective::Reduce: u.recv = rank == a.root; break;
    case Collective::Send: u.recv = false; break;
    case Collective::Recv: u.send = false; break;
    case Collective::Barrier: u.send = u.recv = false; break;
    default: break;
  }
  return u;
}
}  // namespace

void Communicator::validate(const CallArgs& a, bool* inPlace) const {
  const char* what = collectiveName(a.coll);
  KUMI_REQUIRE_ARG(validType(a.type), what, ": invalid data type ", static_cast<int>(a.type));
  const bool reduces = a.coll == Collective::AllReduce || a.coll == Collective::ReduceScatter || a.coll == Collective::Reduce;
  KUMI_REQUIRE_ARG(!reduces || validOp(a.op), what, ": invalid reduction op ", static_cast<int>(a.op));
  const std::uint64_t es = typeSize(a.type);
  const std::uint64_t n = static_cast<std::uint64_t>(size_);
  const bool scaled =
      a.coll == Collective::ReduceScatter || a.coll == Collective::AllGather || a.coll == Collective::AllToAll;
  KUMI_REQUIRE_ARG(a.count <= kMaxBytes / es / (scaled ? n : 1), what, ": count ", a.count,
                   " is too large (a negative count passed as size_t?)");
  if (a.coll == Collective::Broadcast || a.coll == Collective::Reduce)
    KUMI_REQUIRE_ARG(a.root >= 0 && a.root < size_, what, ": root ", a.root, " is not a rank of this communicator (size ", size_, ")");
  if (a.coll == Collective::Send || a.coll == Collective::Recv) {
    KUMI_REQUIRE_ARG(a.root >= 0 && a.root < size_, what, ": peer ", a.root, " is not a rank of this communicator (size ", size_, ")");
    KUMI_REQUIRE_ARG(a.root != rank_, what, ": peer ", a.root, " is this rank itself");
  }
  // Bytes each buffer must hold, and whether this rank uses it at all.
  const BufferUse use = bufferUse(a, rank_, size_);
  const bool needSend = use.send, needRecv = use.recv;
  const std::uint64_t sendBytes = use.sendBytes, recvBytes = use.recvBytes;
  if (a.count > 0) {
    KUMI_REQUIRE_ARG(!needSend || a.send != nullptr, what, ": send buffer is NULL with count ", a.count);
    KUMI_REQUIRE_ARG(!needRecv || a.recv != nullptr, what, ": receive buffer is NULL with count ", a.count);
  }
  // In place when the buffers coincide the way the API defines; any other overlap is an error.
  *inPlace = false;
  if (needSend && needRecv && a.count > 0) {
    const auto* s = static_cast<const std::byte*>(a.send);
    const auto* r = static_cast<const std::byte*>(a.recv);
    const std::uint64_t myBlock = static_cast<std::uint64_t>(rank_) * a.count * es;
    if (a.coll == Collective::ReduceScatter) *inPlace = r == s + myBlock;
    else if (a.coll == Collective::AllGather) *inPlace = s == r + myBlock;
    else *inPlace = s == r;
    // Every block of the input is still to be sent when the first arrives: in place would need
    // a copy of the whole input, which the caller can make better (or avoid) than kumi.
    KUMI_REQUIRE_ARG(!(*inPlace && a.coll == Collective::AllToAll), what,
                     ": in place (send buffer == receive buffer) is not supported; use separate buffers");
    KUMI_REQUIRE_ARG(*inPlace || !overlaps(a.send, sendBytes, a.recv, recvBytes), what,
                     ": send and receive buffers overlap",
                     a.coll == Collective::AllToAll ? "; use separate buffers"
                                                    : " but are not in place (see kumi.h for the in-place layout)");
  }
}

std::size_t Communicator::CacheHash::operator()(const CacheKey& c) const {
  const ScheduleKey& k = c.key;
  std::uint64_t h = kFnvOffset;
  for (std::uint64_t v : {std::uint64_t(k.coll), std::uint64_t(k.count), std::uint64_t(k.root), std::uint64_t(k.inPlace),
                          std::uint64_t(k.divide), std::uint64_t(k.sliceCount), std::uint64_t(c.algo)})
    h = fnv1aMix(h, v);
  return static_cast<std::size_t>(h);
}

PreparedSchedule& Communicator::scheduleFor(const ScheduleKey& k, Algorithm algo) {
  CacheKey key{k, algo};
  if (last_ && key == lastKey_) return *last_;
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    lastKey_ = key;
    return *(last_ = it->second.get());
  }
  if (cache_.size() >= kScheduleCacheLimit) {
    cache_.clear();
    last_ = nullptr;
  }
  auto ps = std::make_unique<PreparedSchedule>(buildSchedule(k, algo));
  KUMI_INFO(collectiveName(k.coll), " count ", k.count, " on ", size_, " ranks: ", algorithmName(algo), " (",
            ps->schedule.steps.size(), " steps, slice ", k.sliceCount, " elements)");
  lastKey_ = key;
  return *(last_ = cache_.emplace(key, std::move(ps)).first->second.get());
}

void Communicator::execute(const CallArgs& a, void* stream) {
  if (!gpuLooked_) {
    gpu_ = gpu::device(&noGpu_);
    gpuLooked_ = true;
    if (gpu_ != nullptr) enablePeerMemory();
  }
  if (gpu_ != nullptr) {
    bool device = false;
    try {
      device = onDevice(a, stream, *gpu_);
    } catch (const Error& e) {
      fail(e.code(), "rank ", rank_, ": ", e.what());
    }
    if (device) return enqueueOnDevice(a, stream, *gpu_);
    // Host buffers given with a stream: its earlier work (a copy into them, say) comes first.
    if (stream != nullptr) gpu_->synchronize(stream);
  } else if (stream != nullptr) {
    fail(kumiInvalidArgument, "rank ", rank_, ": ", collectiveName(a.coll), ": a CUDA stream was given, but no GPU can be used (",
         noGpu_, ")");
  }
  if (device_) device_->drain();  // calls queued on device buffers come first
  std::lock_guard<std::mutex> lock(opMutex_);
  executeLocked(a);
}

void Communicator::enablePeerMemory() {
  if (shm_ == nullptr || cfg_.cudaIpc == 0) return;
  ipc_ = std::make_unique<gpu::IpcCache>(*gpu_);
  // A message by name arriving for a host buffer (this rank's call is on host memory, the
  // sender's on device memory): read with a blocking copy. Runs inside a call, under opMutex_.
  shm_->enableDevicePull([this](void* dst, const DeviceMessage& m, std::size_t bytes) {
    const std::byte* src = namedBytes(m, *ipc_);
    if (m.eventId != 0) writtenEvent(m, *ipc_).synchronize();  // the sender's queue has written it
    gpu_->copyNow(dst, src, bytes);
  }, gpu_->readableGpus(gpu_->current()));
}

bool Communicator::onDevice(const CallArgs& a, void* stream, gpu::Device& dev) const {
  const BufferUse use = bufferUse(a, rank_, size_);
  const void* send = use.send && a.count > 0 ? a.send : nullptr;
  const void* recv = use.recv && a.count > 0 ? a.recv : nullptr;
  if (send == nullptr && recv == nullptr) return stream != nullptr;  // nothing to touch: ordered on the stream if given
  const gpu::MemoryKind s = dev.kindOf(send ? send : recv), r = dev.kindOf(recv ? recv : send);
  return gpu::pathFor(collectiveName(a.coll), s, r) == gpu::Path::Gpu;
}

void Communicator::enqueueOnDevice(const CallArgs& a, void* stream, gpu::Device& dev) {
  const char* what = collectiveName(a.coll);
  if (aborted_.load()) fail(kumiAborted, "rank ", rank_, ": ", what, " on an aborted communicator");
  {
    std::lock_guard<std::mutex> lock(asyncMutex_);
    if (asyncCode_ != kumiSuccess)
      fail(asyncCode_, "rank ", rank_, ": ", what, " on a communicator that failed earlier: ", asyncMessage_);
  }
  // Refused here, at the call, as the host path refuses it: a call that never reached the
  // queue never reached the other ranks.
  bool inPlace = false;
  try {
    validate(a, &inPlace);
  } catch (const Error& e) {
    fail(e.code(), "rank ", rank_, ": ", e.what());
  }
  const int index = dev.current();
  if (!device_) {
    device_ = std::make_unique<DeviceCalls>(
        dev, index, [this](const CallArgs& c, const gpu::StreamMark& m, DeviceExecutor& x, gpu::WorkQueue& q) {
          runOnDevice(c, m, x, q);
        });
  } else if (device_->deviceIndex() != index) {
    fail(kumiInvalidArgument, "rank ", rank_, ": ", what, ": this communicator works on GPU ", device_->deviceIndex(),
         " but the calling thread's current GPU is ", index, " (one communicator per GPU, as in NCCL)");
  }
  device_->enqueue(a, stream);
}

void Communicator::runOnDevice(const CallArgs& a, const gpu::StreamMark& mark, DeviceExecutor& x, gpu::WorkQueue& q) {
  std::lock_guard<std::mutex> lock(opMutex_);
  try {
    DeviceRun run{mark, x, q};
    executeLocked(a, &run);
  } catch (const Error& e) {
    // Most failures were recorded on the way (failOperation); not those refused before running.
    std::lock_guard<std::mutex> l(asyncMutex_);
    if (asyncCode_ == kumiSuccess) {
      asyncCode_ = e.code();
      asyncMessage_ = e.what();
      KUMI_WARN(e.what());  // nobody else will say it: the caller has returned
    }
    throw;
  }
}

kumiResult_t Communicator::asyncError(std::string* message) const {
  std::lock_guard<std::mutex> lock(asyncMutex_);
  if (message) *message = asyncMessage_;
  return asyncCode_;
}

void Communicator::executeLocked(const CallArgs& a, DeviceRun* device) {
  if (aborted_.load()) fail(kumiAborted, "rank ", rank_, ": ", collectiveName(a.coll), " on an aborted communicator");
  if (failedCode_ != kumiSuccess)
    fail(failedCode_, "rank ", rank_, ": ", collectiveName(a.coll), " on a communicator that failed earlier: ", failure_);
  bool inPlace = false;
  try {
    validate(a, &inPlace);
  } catch (const Error& e) {
    fail(e.code(), "rank ", rank_, ": ", e.what());
  }
  // Numbered only once valid: a call refused here never reached the other ranks.
  std::uint64_t seq;
  if (a.coll == Collective::Send || a.coll == Collective::Recv) {
    auto& counts = a.coll == Collective::Send ? sentTo_ : receivedFrom_;
    if (counts.empty()) counts.assign(static_cast<std::size_t>(size_), 0);
    seq = ++counts[static_cast<std::size_t>(a.root)];
  } else {
    seq = ++collSeq_;
  }
  const CallStamp stamp = stampCall(a, seq, a.coll == Collective::Recv ? a.root : rank_, device != nullptr);
  const std::size_t es = typeSize(a.type);
  // Device buffers move over other links than host ones (docs/PLANNER.md): planned apart, and
  // stamped apart (stampCall), so that ranks passing different kinds are told, not mismatched.
  Planner& planner = device ? planners_.device : planners_.host;
  const Plan& plan = planner.plan(a.coll, a.count, es);
  ScheduleKey key{a.coll, size_, rank_, a.count, a.root, inPlace, a.op == kumiAvg, planner.slice(plan, a.coll, a.count, es)};
  key.hostOf = &world_.hostIndex();
  PreparedSchedule& ps = scheduleFor(key, plan.algo);
  lastAlgorithm_ = algorithmName(plan.algo);
  const std::uint64_t rec = recorder_ ? recorder_->begin(stamp, lastAlgorithm_.load(), ps.peers, a.count * es) : 0;
  if (ps.schedule.steps.empty()) {
    if (recorder_) recorder_->finish(rec, FlightRecorder::State::Done);
    return;
  }
  Buffers bufs{static_cast<const std::byte*>(a.send), static_cast<std::byte*>(a.recv), nullptr, es};
  const std::size_t scratchBytes = static_cast<std::size_t>(ps.schedule.scratchCount) * es;
  if (scratchBytes && !device) bufs.scratch = executor_.scratch(scratchBytes);
  ExecParams p{a.type, a.op, size_, cfg_.timeoutSeconds, &aborted_, [this](int r) { return peerName(r); }};
  if (cpusAvailable_ < 0) cpusAvailable_ = cpusOfThisProcess();  // after KUMI_BIND, which runs once the communicator exists
  // Waking a rank asleep on a futex or epoll costs tens of microseconds, more than a whole
  // shared-memory message: spin longer where peers share the host (each poll yields the CPU,
  // so ranks that outnumber the cores still run). Over TCP a short spin is enough.
  // Polling without yielding only pays when every local rank has a core: with more ranks than
  // cores it would keep the awaited peer off the CPU.
  p.spinBeforeBlock = cfg_.spinBeforeBlock >= 0 ? cfg_.spinBeforeBlock : sharedMemory_ ? 2000 : 8;
  p.busyPolls = sharedMemory_ && world_.localSize(rank_) <= cpusAvailable_ ? 256 : 0;
  // A call that waits long looks for trouble elsewhere: a failure another rank posted, or
  // peers stuck in a different call with nothing sent (e.g. broadcasts with different roots,
  // where every rank waits to receive, so no message can show the mismatch).
  struct LongWait {
    const CallStamp& stamp;
    const std::vector<int>& peers;
    bool collective;
    bool published = false;
  } wait{stamp, ps.peers, a.coll != Collective::Send && a.coll != Collective::Recv};
  // Two pointers: held in std::function's own storage, so a call allocates nothing for it.
  if (store_) p.onLongWait = [this, &wait] {
    checkFailureNotice();
    if (wait.collective) compareStuckCalls(wait.stamp, wait.peers, wait.published);
  };
  try {
    if (size_ > 1 && !ps.connected) {
      // One deadline for connecting and running, as for any call.
      p.deadline = Deadline::after(cfg_.timeoutSeconds);
      transport_->connect(ps.peers, *p.deadline);
      ps.connected = true;
    }
    if (transport_) transport_->setCallStamp(stamp);
    if (device) {
      if (scratchBytes) bufs.scratch = device->executor.scratch(scratchBytes);  // device memory; may fail
      device->queue.waitFor(device->mark);
      device->executor.usePeerMemory(ipc_.get());
      device->executor.run(ps, bufs, transport_.get(), p, device->queue);
    } else {
      executor_.run(ps, bufs, transport_.get(), p);
    }
  } catch (const Error& e) {
    if (recorder_) recorder_->finish(rec, FlightRecorder::State::Failed);
    failOperation(a, seq, e);
  }
  if (recorder_) recorder_->finish(rec, FlightRecorder::State::Done);
}

void Communicator::checkFailureNotice() {
  std::string notice;
  try {
    notice = readFailureNotice(*store_);
  } catch (const Error&) {
    return;  // a lost store is no verdict on this call; connections and the deadline still are
  }
  if (!notice.empty()) throw NoticeSeen(notice);
}

void Communicator::compareStuckCalls(const CallStamp& mine, const std::vector<int>& peers, bool& published) {
  auto encode = [](const CallStamp& c) { return cat(c.lo, ' ', c.hi); };
  try {
    if (!published) {
      store_->set(cat("call/", rank_), encode(mine));
      published = true;
    }
    for (int peer : peers) {
      const std::string key = cat("call/", peer);
      if (!store_->check({key})) continue;
      CallStamp theirs;
      if (std::sscanf(store_->get(key, Store::Timeout(1000)).c_str(), "%" SCNu64 " %" SCNu64, &theirs.lo, &theirs.hi) != 2) continue;
      // Only the same call number can disagree; a peer at another is merely behind or ahead.
      if ((theirs.hi & 0xffffffffu) == (mine.hi & 0xffffffffu) && theirs != mine) throw CallMismatch(peer, mine, theirs);
    }
  } catch (const CallMismatch&) {
    throw;
  } catch (const Error&) {
    // A lost store: connections and the deadline still judge this call.
  }
}

void Communicator::failOperation(const CallArgs& a, std::uint64_t seq, const Error& e) {
  const bool aborted = aborted_.load();
  const std::string call = describe(a, seq);
  const std::string here = cat("rank ", rank_, " on ", Registry::instance().hostname());
  // What this rank saw, and what it tells the others if it is the first to fail.
  std::string seen = e.what(), story;
  if (const auto* m = dynamic_cast<const CallMismatch*>(&e)) {
    seen = cat("ranks called different operations: ", peerName(m->peer), ": ", describeStamp(m->received), "; ",
               here, ": ", describeStamp(m->expected));
    if (differsOnlyInMemory(m->received, m->expected))
      seen += "; every rank of a collective must pass device buffers, or every rank host buffers "
              "(kumi plans the two for different links)";
    story = seen;
  } else if (const auto* lost = dynamic_cast<const PeerLost*>(&e)) {
    // Had the peer failed on its own, it would have said so before closing: it died or left.
    story = cat(peerName(lost->peer), " failed or left during ", call, " (", here, " saw: ", e.what(), ")");
  } else if (const auto* link = dynamic_cast<const LinkError*>(&e)) {
    seen = cat(e.what(), " [link ", peerName(link->peer), " -> ", here, "]");
    story = cat(here, " failed in ", call, ": ", seen);
  } else {
    story = cat(here, " failed in ", call, ": ", e.what());
  }
  std::string first;
  if (dynamic_cast<const NoticeSeen*>(&e)) first = e.what();
  else if (!aborted && store_) first = postAbort(*store_, story);  // before closing: peers read it when they see us go
  // With the store gone, a story a peer left on its way out is the best root cause there is.
  if (first.empty() && dynamic_cast<const PeerFailed*>(&e)) first = e.what();
  failedCode_ = aborted ? kumiAborted : e.code();
  if (aborted) failure_ = cat(call, ": the communicator was aborted (kumiCommAbort)");
  else if (first.empty() || first == story) failure_ = cat(call, ": ", seen);
  else if (first == seen) failure_ = cat(call, ": ", first);
  else failure_ = cat(call, ": ", first, " (here: ", seen, ")");
  {
    // What kumiCommGetAsyncError reports, for the failures of device calls and host calls alike.
    std::lock_guard<std::mutex> l(asyncMutex_);
    if (asyncCode_ == kumiSuccess) {
      asyncCode_ = failedCode_;
      asyncMessage_ = cat("rank ", rank_, ": ", failure_);
    }
  }
  if (transport_) {
    transport_->publishFailure(aborted ? abortStory() : first.empty() ? story : first);
    transport_->cancelAll();
    transport_->shutdown();  // peers see closed connections and fail fast too
  }
  KUMI_WARN("rank ", rank_, ": ", failure_);
  if (recorder_ && !aborted) {
    KUMI_WARN("rank ", rank_, ": last operations of communicator ", id_, ":\n", recorder_->render(failure_, 16));
    try {
      const std::string file = recorder_->write(failure_);
      if (!file.empty()) KUMI_WARN("rank ", rank_, ": flight recorder written to ", file);
    } catch (const Error& w) {
      KUMI_WARN("rank ", rank_, ": ", w.what());
    }
  }
  fail(failedCode_, "rank ", rank_, ": ", failure_);
}

std::string Communicator::dumpFlightRecorder(const std::string& path, const std::string& reason) const {
  if (!recorder_) fail(kumiInvalidUsage, "the flight recorder is off (KUMI_FLIGHT_RECORDER=0)");
  std::string file = recorder_->write(reason, path);
  if (file.empty()) KUMI_WARN("rank ", rank_, ": ", recorder_->render(reason));
  return file;
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  // The whole split holds the operation lock, so abort waits for it (and interrupts the child's
  // start through `cancel`) instead of freeing this communicator under it.
  if (device_) device_->drain();  // calls queued on device buffers keep their place before it
  std::lock_guard<std::mutex> lock(opMutex_);
  // Everyone learns everyone's (color, key) through an allgather on this communicator.
  std::vector<std::int32_t> mine = {color, key};
  std::vector<std::int32_t> all(2 * static_cast<std::size_t>(size_));
  executeLocked({Collective::AllGather, mine.data(), all.data(), 2, kumiInt32, kumiSum, 0});
  const std::uint64_t seq = ++splitSeq_;
  if (color < 0) return nullptr;
  std::vector<std::pair<std::int32_t, int>> members;  // (key, old rank)
  for (int r = 0; r < size_; ++r)
    if (all[2 * static_cast<std::size_t>(r)] == color) members.emplace_back(all[2 * static_cast<std::size_t>(r) + 1], r);
  std::sort(members.begin(), members.end());
  int newRank = 0;
  for (std::size_t i = 0; i < members.size(); ++i)
    if (members[i].second == rank_) newRank = static_cast<int>(i);
  const int newSize = static_cast<int>(members.size());
  std::string childId = cat(id_, "/s", seq, "c", color);
  Config c = cfg_;
  c.rank = newRank;
  c.worldSize = newSize;
  if (newSize == 1) return std::make_unique<Communicator>(c, 0, 1, childId, nullptr, SockAddr{});
  try {
    return std::make_unique<Communicator>(c, newRank, newSize, childId, base_, listenAddress_, &aborted_, store_.get());
  } catch (const Error& e) {
    if (aborted_.load()) fail(kumiAborted, "rank ", rank_, ": split aborted: ", e.what());
    throw;
  }
}

std::string Communicator::abortStory() const {
  return cat("rank ", rank_, " on ", Registry::instance().hostname(), " aborted the communicator");
}

void Communicator::abort() {
  // The story first, then the closing: peers that see the connections go find why. (The store
  // client is thread-safe; the transport is touched only under the operation lock.)
  const bool first = !aborted_.exchange(true);
  if (first && store_) postAbort(*store_, abortStory());
  if (transport_) transport_->interrupt();
  std::lock_guard<std::mutex> lock(opMutex_);  // waits for the running operation to give up
  if (transport_) {
    transport_->publishFailure(abortStory());
    transport_->cancelAll();
    transport_->shutdown();
  }
}

}  // namespace kumi
