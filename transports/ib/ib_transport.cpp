#include "transports/ib/ib_transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <unordered_map>

#include "core/crc32c.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "core/strings.hpp"
#include "gpu/device.hpp"
#include "transports/ib/connection_record.hpp"
#include "transports/ib/gdr_policy.hpp"
#include "transports/ib/gid_select.hpp"
#include "transports/ib/reg_cache.hpp"
#include "transports/ib/unmap_watch.hpp"
#include "transports/ib/verbs.hpp"

namespace kumi {
using namespace ib;

namespace {

constexpr std::uint32_t kSlotMagic = 0x4b554d52;  // "KUMR"
constexpr std::uint32_t kHasChecksum = 1;
// The message's bytes were written straight into the receiver's advertised device buffer; the
// slot carries the header alone (GPUDirect RDMA receives).
constexpr std::uint32_t kDirect = 2;
// Receive adverts: after its ring, each receiver has room for kAdverts adverts that the peer
// writes (with immediate kAdvertTag | entry), one per device receive it may write directly.
constexpr std::uint32_t kAdverts = 16;
constexpr std::uint32_t kAdvertTag = 0x40000000;
constexpr std::uint32_t kAdvertMagic = 0x4b554d41;  // "KUMA"
// One RDMA write carries at most 2^31 bytes; direct writes go in pieces of 1 GiB.
constexpr std::size_t kMaxWriteBytes = std::size_t(1) << 30;
// The stamp of the connection set-up's messages on the bootstrap transport ("kumi-ib connect").
constexpr CallStamp kConnectStamp{0x6e6f632d62692d69ull, 0x6d756bull};
// Below this, copying into the staging slot costs less than the NIC's second gather element.
constexpr std::size_t kZeroCopyMinBytes = 16 << 10;
// Handles of device registrations, apart from those of host buffers.
constexpr std::uint64_t kDeviceHandleBase = std::uint64_t(1) << 62;

// The first bytes of every slot: what the part is, so that the receiver checks it belongs to
// the receive it is matched with (the same checks as the TCP and shared-memory transports).
struct SlotHeader {
  std::uint32_t magic;
  std::uint32_t sequence;  // the message's number on this pair and direction
  std::uint64_t messageBytes;
  std::uint64_t offset;  // of this part's bytes within the message
  std::uint32_t partBytes;
  std::uint32_t checksum;  // CRC32C of the part's bytes, when flags has kHasChecksum
  std::uint64_t stampLo;
  std::uint64_t stampHi;
  std::uint32_t flags;
  std::uint32_t reserved[3];
};
static_assert(sizeof(SlotHeader) == 64);

// A receiver's offer to the sender: message `sequence` may be written to [address, address +
// bytes) under rkey. Checked on arrival (magic, CRC) and matched by message number, so an advert
// that comes late, twice or torn by the next one in its entry is never used for another message.
struct Advert {
  std::uint32_t magic;
  std::uint32_t sequence;
  std::uint64_t address;
  std::uint64_t bytes;
  std::uint32_t rkey;
  std::uint32_t crc;  // CRC32C of the fields above
};
static_assert(sizeof(Advert) == 32);

std::uint32_t advertCrc(const Advert& a) { return crc32c(&a, offsetof(Advert, crc)); }

// wr_id: what a completion is about. Receives are only ever for incoming writes and credits.
enum class Work : std::uint64_t { kData = 1, kCredit = 2, kRecv = 3, kProbe = 4, kAdvert = 5, kDirect = 6 };
std::uint64_t wrId(Work w, int qp, std::uint32_t slot) {
  return (static_cast<std::uint64_t>(w) << 56) | (static_cast<std::uint64_t>(qp) << 32) | slot;
}
Work workOf(std::uint64_t id) { return static_cast<Work>(id >> 56); }
int qpOf(std::uint64_t id) { return static_cast<int>((id >> 32) & 0xffffff); }
std::uint32_t slotOf(std::uint64_t id) { return static_cast<std::uint32_t>(id); }

struct SendItem {
  Request* req;
  const char* data;
  std::size_t bytes;
  std::size_t offset = 0;
  std::uint32_t sequence;
  CallStamp stamp;
};

struct RecvItem {
  Request* req;
  char* data;
  std::size_t bytes;
  std::size_t offset = 0;
  std::uint32_t sequence;
  CallStamp expect;
  char* device = nullptr;   // registered device memory the sender may write the bytes into
  bool advertised = false;  // the sender was told so
};

}  // namespace

struct Connection {
  int peer = -1;
  std::string peerWhere;  // its device:port
  // Declared in the order that lets the members go in reverse: QPs, CQ, registrations, memory.
  PinnedArea recvArea, sendArea;
  MrPtr recvMr, sendMr;
  CqPtr cq;
  std::vector<QpPtr> qps;
  std::vector<int> sendsOut;  // posted, not completed, send work requests per QP
  int sendDepth = 0;
  // Our ring (the peer writes it) and the peer's (we write it).
  int slots = 0;
  std::size_t slotBytes = 0;
  int remoteSlots = 0;
  std::size_t remoteSlotBytes = 0;
  std::uint64_t remoteRing = 0;
  std::uint32_t remoteRkey = 0;
  // Sender side: counts wrap at 2^32; differences stay exact.
  std::uint32_t written = 0;    // slots written into the peer's ring
  std::uint32_t peerFreed = 0;  // of those, read by the peer (its last credit)
  std::vector<std::uint8_t> stagingBusy;  // our staging slot's write has not completed yet
  // A zero-copy part reads the user's buffer until its write completes: the send it belongs to
  // completes only then.
  std::vector<Request*> slotRequest;
  // Receiver side.
  std::uint32_t consumed = 0;  // slots of our ring read so far
  std::uint32_t reported = 0;  // `consumed` as last sent back as a credit
  std::vector<std::uint8_t> arrived;
  std::deque<SendItem> sendq;
  std::deque<RecvItem> recvq;
  std::uint32_t sendSeq = 0, recvSeq = 0;
  std::vector<ibv_wc> stash;  // completions polled while arming the CQ before a wait
  // GPUDirect RDMA receives. Receiver: adverts written so far (the next goes to entry
  // advertsSent % kAdverts) and those whose receive has not completed (at most kAdverts, so an
  // entry is rewritten only after its receive is over). Sender: adverts received, in order.
  std::uint32_t advertsSent = 0;
  std::uint32_t advertsOpen = 0;
  std::uint32_t unadvertised = 0;  // receiver: device receives queued but not yet advertised
  std::array<std::uint8_t, kAdverts> advertBusy{};  // receiver: our entry's write not completed yet
  std::deque<Advert> adverts;
  // Liveness: a peer that died leaves a receiver (or a sender waiting for credits) with nothing
  // to notice. After a second without a completion while work is pending, a zero-byte RDMA write
  // goes out: it completes when the peer's NIC acknowledges it, or fails once the retries run out.
  std::chrono::steady_clock::time_point lastHeard = std::chrono::steady_clock::now();
  bool probing = false;
  // A receive kept posted on the bootstrap (TCP) connection, on which the peer never sends
  // again: it fails at once when the peer's process dies (its kernel closes the socket) or
  // tells its story in a last frame, which a dead process's queue pairs never say (and Soft-RoCE
  // does not even time out on).
  Request liveness;
  char livenessByte = 0;
  // Why the bootstrap connection ended while nothing was pending with the peer: a peer that
  // finished its last call may leave. Only work that still needs it (a receive its bytes have
  // not come for, a send) then fails, with this.
  std::string gone;

  char* recvSlot(std::uint32_t s) const { return recvArea.data() + static_cast<std::size_t>(s) * slotBytes; }
  // After the ring: the adverts the peer writes to us, then those we write to the peer from.
  const char* advertIn(std::uint32_t e) const {
    return recvArea.data() + static_cast<std::size_t>(slots) * slotBytes + e * sizeof(Advert);
  }
  char* advertOut(std::uint32_t e) const {
    return recvArea.data() + static_cast<std::size_t>(slots) * slotBytes + (kAdverts + e) * sizeof(Advert);
  }
  char* sendSlot(std::uint32_t s) const { return sendArea.data() + static_cast<std::size_t>(s) * remoteSlotBytes; }
  std::uint32_t qpNumber(int i) const { return qps[static_cast<std::size_t>(i)]->qp_num; }
};

struct IbTransport::Impl {
  IbTransportOptions opt;
  Transport& bootstrap;
  PortInfo port;
  ContextPtr ctx;
  PdPtr pd;
  ChannelPtr channel;
  Fd wakeFd;
  int gidIndex = 0;
  ibv_gid gid{};
  std::string gidText = "-", gidReason;
  std::unordered_map<int, std::unique_ptr<Connection>> conns;
  std::vector<Connection*> live;  // connected, in connection order
  CallStamp stamp;
  std::atomic<bool> interrupted{false};
  bool isShutdown = false;
  std::uint32_t partsReceived = 0;  // for WireChecks::corruptEvery
  std::mt19937 random{std::random_device{}()};
  std::uint64_t zeroCopyBytes = 0;
  std::vector<Request*> bootstrapDone;  // scratch for the bootstrap's progress
  // User buffers registered through the communicator (kumiCommRegister): parts sent from them
  // are written straight from the buffer, without the copy into a staging slot.
  RegistrationCache registrations{[this](std::uintptr_t begin, std::size_t bytes) {
    MrPtr mr = registerMemory(pd.get(), reinterpret_cast<void*>(begin), bytes, IBV_ACCESS_LOCAL_WRITE, where());
    Registration r{begin, begin + bytes, mr->lkey, mr->rkey};
    const std::uint64_t watchId = watchForUnmap(begin, begin + bytes);
    auto release = [watch = unmapWatch, watchId](void* m) {
      MrPtr::deleter_type()(static_cast<ibv_mr*>(m));
      if (watchId) watch->unwatch(watchId);
    };
    return std::make_pair(r, RegistrationCache::Owner(mr.release(), release));
  }};
  // GPUDirect RDMA: device memory the NIC reads itself. The choice is made at the first device
  // registration (when the GPU is known) and holds for the transport's life; a registration the
  // NIC refuses through dma-buf falls back to peer memory where that is there.
  std::optional<GdrChoice> gdr;
  gpu::NicAccess nicAccess;
  gpu::Device* gdrDevice = nullptr;
  std::uint64_t deviceReadBytes = 0;
  std::uint64_t directBytes = 0, directBytesIn = 0;  // written into, received in, a peer's device buffer
  RegistrationCache deviceRegistrations{
      [this](std::uintptr_t begin, std::size_t bytes) { return registerDeviceMemory(begin, bytes); },
      kDeviceHandleBase};
  // Registered buffers unmapped behind our back (freed without kumiCommDeregister) are told here.
  std::shared_ptr<UnmapWatch> unmapWatch;
  std::shared_ptr<UnmapWatch::Subscriber> unmapped;
  bool unmapWatchTried = false;

  std::uint64_t watchForUnmap(std::uintptr_t begin, std::uintptr_t end) {
    if (!unmapWatchTried) {
      unmapWatchTried = true;
      std::string why;
      unmapWatch = UnmapWatch::shared(&why);
      if (unmapWatch) unmapped = unmapWatch->subscribe();
      else
        KUMI_INFO("rank ", opt.rank, ": registered buffers are not watched for unmapping (", why,
                  "): deregister them before freeing them");
    }
    if (!unmapWatch) return 0;
    std::string why;
    const std::uint64_t id = unmapWatch->watch(begin, end, &why);
    if (!id)
      KUMI_INFO("rank ", opt.rank, ": registered buffer [", reinterpret_cast<void*>(begin), ", ", reinterpret_cast<void*>(end),
                ") is not watched for unmapping: ", why, "; deregister it before freeing it");
    return id;
  }

  // Entries whose memory went are no longer used (their parts go through the slots again).
  void dropUnmapped() {
    if (!unmapped) return;
    for (const auto& [begin, end] : unmapped->take())
      if (registrations.invalidate(begin, end) > 0)
        KUMI_INFO("rank ", opt.rank, ": registered memory [", reinterpret_cast<void*>(begin), ", ",
                  reinterpret_cast<void*>(end), ") was unmapped without kumiCommDeregister; its registration is no longer used");
  }

  std::string where() const { return port.describe(); }

  void chooseGdrFor(gpu::Device& device, int deviceIndex) {
    GdrInputs in;
    const auto gpus = device.readableGpus(deviceIndex);
    if (!gpus.empty()) in.gpu = gpus.front();
    in.nic = port.device;
    for (const auto& g : opt.gpuPaths)
      if (g.busId == in.gpu) in.path = g.link;
    in.maxLevel = opt.ib.gdrLevel;
    in.dmabufAllowed = opt.ib.dmabuf;
    in.checksum = opt.checks.checksum;
    in.support = nicAccess = device.nicAccess(deviceIndex);
    gdr = chooseGdr(in);
    gdrDevice = &device;
    KUMI_INFO("rank ", opt.rank, ": ", gdr->reason);
  }

  std::pair<Registration, RegistrationCache::Owner> registerDeviceMemory(std::uintptr_t begin, std::size_t bytes) {
    void* p = reinterpret_cast<void*>(begin);
    constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;  // peers write receives in
    ibv_mr* mr = nullptr;
    if (gdr->mechanism == GdrMechanism::DmaBuf) {
      const gpu::DmaBuf buf = gdrDevice->exportDmabuf(p, bytes);
      std::string why = "the driver would not export the range as a dma-buf";
      if (buf.fd >= 0) {
#if KUMI_HAVE_IBV_DMABUF
        mr = ::ibv_reg_dmabuf_mr(pd.get(), buf.offset, bytes, begin, buf.fd, kAccess);
        why = cat("ibv_reg_dmabuf_mr: ", std::strerror(errno));
#else
        why = "this kumi was built with an rdma-core older than 34, without ibv_reg_dmabuf_mr";
#endif
        ::close(buf.fd);  // the registration keeps the dma-buf for itself
      }
      if (mr == nullptr) {
        if (!nicAccess.peerMemory)
          fail(kumiSystemError, "RDMA transport, rank ", opt.rank, ": ", where(), ": registering ", bytes,
               " bytes of GPU memory for GPUDirect RDMA through dma-buf failed (", why, ") and there is no peer memory (",
               nicAccess.noPeerMemory, ")");
        gdr->mechanism = GdrMechanism::PeerMemory;
        gdr->reason += cat("; the dma-buf registration was refused (", why, "): peer memory instead");
        KUMI_INFO("rank ", opt.rank, ": ", where(), ": dma-buf registration refused (", why,
                  "): GPUDirect RDMA through peer memory instead");
      }
    }
    if (mr == nullptr) {
      mr = ::ibv_reg_mr_iova(pd.get(), gdrDevice->peerMemoryAddress(p), bytes, begin, kAccess);
      if (mr == nullptr)
        fail(kumiSystemError, "RDMA transport, rank ", opt.rank, ": ", where(), ": registering ", bytes,
             " bytes of GPU memory for GPUDirect RDMA through peer memory failed: ", std::strerror(errno));
    }
    Registration r{begin, begin + bytes, mr->lkey, mr->rkey};
    return {r, RegistrationCache::Owner(mr, [](void* m) { ::ibv_dereg_mr(static_cast<ibv_mr*>(m)); })};
  }

  std::string qpName(const Connection& c, int qp) const {
    return cat(where(), " QP ", c.qps.empty() ? 0u : c.qpNumber(qp), " to rank ", c.peer,
               c.peerWhere.empty() ? std::string() : cat(" (", c.peerWhere, ")"));
  }

  [[noreturn]] void linkFailed(const Connection& c, int qp, const std::string& what) const {
    throw PeerLost(c.peer, cat("RDMA transport, rank ", opt.rank, ": ", qpName(c, qp), ": ", what));
  }

  Impl(const IbTransportOptions& o, Transport& b) : opt(o), bootstrap(b) {
    std::string why;
    const auto ports = findPorts(opt.ib.hca, &why);
    if (ports.empty()) fail(kumiSystemError, "RDMA transport, rank ", opt.rank, ": ", why);
    port = ports[static_cast<std::size_t>(opt.port) % ports.size()];
    ctx = openDevice(port.device);
    pd = PdPtr(::ibv_alloc_pd(ctx.get()));
    if (!pd) failErrno("RDMA transport: allocating a protection domain on ", where());
    channel = ChannelPtr(::ibv_create_comp_channel(ctx.get()));
    if (!channel) failErrno("RDMA transport: creating a completion channel on ", where());
    const int flags = ::fcntl(channel->fd, F_GETFL);
    ::fcntl(channel->fd, F_SETFL, flags | O_NONBLOCK);
    ::fcntl(ctx->async_fd, F_SETFL, ::fcntl(ctx->async_fd, F_GETFL) | O_NONBLOCK);
    wakeFd = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (wakeFd.get() < 0) failErrno("RDMA transport: eventfd");
    chooseGid();
  }

  void chooseGid() {
    if (!port.ethernet) {
      // InfiniBand routes by LID inside a subnet; GID 0 is the port's own, always set.
      gidIndex = opt.ib.gid.forcedIndex >= 0 ? opt.ib.gid.forcedIndex : 0;
      if (::ibv_query_gid(ctx.get(), static_cast<std::uint8_t>(port.port), gidIndex, &gid) != 0)
        failErrno("RDMA transport: reading GID ", gidIndex, " of ", where());
      gidReason = cat("InfiniBand port, LID ", port.lid, ", GID index ", gidIndex);
      return;
    }
    const auto table = readGidTable(port.sysfsPortDir, port.gidTableLength);
    const GidChoice choice = selectGid(table, opt.ib.gid, where());
    gidIndex = choice.index;
    std::memcpy(gid.raw, choice.gid.data(), sizeof gid.raw);
    gidText = choice.text;
    gidReason = choice.reason;
  }

  std::unique_ptr<Connection> create(int peer) {
    auto c = std::make_unique<Connection>();
    c->peer = peer;
    c->slots = opt.ib.slots;
    c->slotBytes = opt.ib.slotBytes;
    c->recvArea = PinnedArea(static_cast<std::size_t>(c->slots) * c->slotBytes + 2 * kAdverts * sizeof(Advert));
    c->recvMr = registerMemory(pd.get(), c->recvArea.data(), c->recvArea.size(),
                               IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, where());
    c->arrived.assign(static_cast<std::size_t>(c->slots), 0);
    const int q = opt.ib.qpsPerConnection;
    // Per QP: every slot may be in flight on it, and as many credits; a few spare.
    c->sendDepth = 2 * std::max(opt.ib.slots, 8) + 4 + static_cast<int>(kAdverts);
    const int recvDepth = c->sendDepth;
    c->cq = CqPtr(::ibv_create_cq(ctx.get(), q * (c->sendDepth + recvDepth), nullptr, channel.get(), 0));
    if (!c->cq) failErrno("RDMA transport: creating a completion queue on ", where(), " for rank ", peer);
    for (int i = 0; i < q; ++i) {
      ibv_qp_init_attr init{};
      init.send_cq = c->cq.get();
      init.recv_cq = c->cq.get();
      init.qp_type = IBV_QPT_RC;
      init.cap.max_send_wr = static_cast<std::uint32_t>(c->sendDepth);
      init.cap.max_recv_wr = static_cast<std::uint32_t>(recvDepth);
      init.cap.max_send_sge = 2;  // a staging slot's header, then the user's registered bytes
      init.cap.max_recv_sge = 1;
      ibv_qp* qp = ::ibv_create_qp(pd.get(), &init);
      if (!qp) failErrno("RDMA transport: creating queue pair ", i, " on ", where(), " for rank ", peer);
      c->qps.emplace_back(qp);
      ibv_qp_attr a{};
      a.qp_state = IBV_QPS_INIT;
      a.pkey_index = 0;
      a.port_num = static_cast<std::uint8_t>(port.port);
      a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
      if (int e = ::ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
        fail(kumiSystemError, "RDMA transport: ", qpName(*c, i), ": to INIT: ", std::strerror(e));
      // Receives are posted before the peer can write: an early write finds one waiting.
      for (int k = 0; k < recvDepth; ++k) postRecv(*c, i);
    }
    c->sendsOut.assign(static_cast<std::size_t>(q), 0);
    return c;
  }

  void postRecv(Connection& c, int qp) {
    ibv_recv_wr wr{};
    ibv_recv_wr* bad = nullptr;
    wr.wr_id = wrId(Work::kRecv, qp, 0);
    wr.num_sge = 0;  // writes with immediate and credits carry nothing into the receive
    if (int e = ::ibv_post_recv(c.qps[static_cast<std::size_t>(qp)].get(), &wr, &bad))
      linkFailed(c, qp, cat("posting a receive failed: ", std::strerror(e)));
  }

  ConnectionRecord recordFor(const Connection& c, std::uint32_t psn) const {
    ConnectionRecord r;
    r.where = where();
    r.linkLayer = port.linkLayer();
    r.lid = port.lid;
    std::copy(std::begin(gid.raw), std::end(gid.raw), r.gid.begin());
    r.mtu = static_cast<int>(port.activeMtu);
    r.psn = psn;
    r.slots = c.slots;
    r.slotBytes = c.slotBytes;
    r.ring = reinterpret_cast<std::uintptr_t>(c.recvArea.data());
    r.rkey = c.recvMr->rkey;
    for (std::size_t i = 0; i < c.qps.size(); ++i) r.qpns.push_back(c.qps[i]->qp_num);
    return r;
  }

  // Sends one short text to each peer and receives one from each, over the bootstrap transport.
  // A peer that died or never comes fails it at once (TCP: refused or closed, naming the peer),
  // which the store could not tell.
  std::vector<std::string> exchange(const std::vector<int>& peers, const std::vector<std::string>& texts,
                                    const Deadline& deadline, const char* what) {
    constexpr std::size_t kBytes = 512;
    const std::size_t n = peers.size();
    std::vector<std::array<char, kBytes>> out(n), in(n);
    std::vector<Request> reqs(2 * n);
    bootstrap.setCallStamp(kConnectStamp);  // the communicator sets the call's own stamp after connect
    for (std::size_t i = 0; i < n; ++i) {
      KUMI_REQUIRE_ARG(texts[i].size() < kBytes, "RDMA connection record too long: ", texts[i]);
      out[i].fill(0);
      in[i].fill(0);
      std::memcpy(out[i].data(), texts[i].data(), texts[i].size());
      bootstrap.postSend(peers[i], out[i].data(), kBytes, &reqs[2 * i]);
      bootstrap.postRecv(peers[i], in[i].data(), kBytes, &reqs[2 * i + 1]);
    }
    std::vector<Request*> done;
    auto pending = [&] {
      for (const auto& r : reqs)
        if (r.partsLeft > 0) return true;
      return false;
    };
    while (pending()) {
      if (interrupted.load()) fail(kumiAborted, "RDMA transport: connecting was aborted");
      if (deadline.expired()) {
        std::string waiting;
        for (std::size_t i = 0; i < n; ++i)
          if (reqs[2 * i + 1].partsLeft > 0) waiting += cat(waiting.empty() ? "" : ", ", "rank ", peers[i]);
        fail(kumiTimeout, "RDMA transport, rank ", opt.rank, " (", where(), "): ", waiting, " did not ", what,
             " before the deadline");
      }
      if (!bootstrap.progress(done)) bootstrap.waitForEvents(std::max(1, std::min(100, deadline.msLeft())));
    }
    std::vector<std::string> got;
    for (auto& b : in) got.emplace_back(b.data(), ::strnlen(b.data(), kBytes));
    return got;
  }

  void bringUp(Connection& c, const ConnectionRecord& r, std::uint32_t myPsn) {
    c.peerWhere = r.where;
    if (r.linkLayer != port.linkLayer())
      fail(kumiRemoteError, "RDMA transport: ", where(), " is ", port.linkLayer(), " but rank ", c.peer, "'s ", r.where, " is ",
           r.linkLayer, ": the two cannot talk");
    if (r.qpns.size() != c.qps.size())
      fail(kumiRemoteError, "RDMA transport: rank ", c.peer, " has ", r.qpns.size(),
           " queue pairs per connection, rank ", opt.rank, " has ", c.qps.size(), ": set KUMI_IB_QPS_PER_CONNECTION the same everywhere");
    c.remoteSlots = r.slots;
    c.remoteSlotBytes = r.slotBytes;
    c.remoteRing = r.ring;
    c.remoteRkey = r.rkey;
    c.sendArea = PinnedArea(static_cast<std::size_t>(c.remoteSlots) * c.remoteSlotBytes);
    c.sendMr = registerMemory(pd.get(), c.sendArea.data(), c.sendArea.size(), IBV_ACCESS_LOCAL_WRITE, where());
    c.stagingBusy.assign(static_cast<std::size_t>(c.remoteSlots), 0);
    c.slotRequest.assign(static_cast<std::size_t>(c.remoteSlots), nullptr);
    const auto mtu = static_cast<ibv_mtu>(std::min(static_cast<int>(port.activeMtu), r.mtu));
    for (std::size_t i = 0; i < c.qps.size(); ++i) {
      ibv_qp* qp = c.qps[i].get();
      const int qi = static_cast<int>(i);
      ibv_qp_attr a{};
      a.qp_state = IBV_QPS_RTR;
      a.path_mtu = mtu;
      a.dest_qp_num = r.qpns[i];
      a.rq_psn = r.psn;
      a.max_dest_rd_atomic = 1;
      a.min_rnr_timer = 12;  // 0.64 ms: a receive is reposted long before
      a.ah_attr.port_num = static_cast<std::uint8_t>(port.port);
      a.ah_attr.sl = static_cast<std::uint8_t>(opt.ib.serviceLevel);
      if (port.ethernet || opt.ib.gid.forcedIndex >= 0) {
        a.ah_attr.is_global = 1;
        std::copy(r.gid.begin(), r.gid.end(), a.ah_attr.grh.dgid.raw);
        a.ah_attr.grh.sgid_index = static_cast<std::uint8_t>(gidIndex);
        a.ah_attr.grh.hop_limit = 255;
        a.ah_attr.grh.traffic_class = static_cast<std::uint8_t>(opt.ib.trafficClass);
      }
      a.ah_attr.dlid = static_cast<std::uint16_t>(r.lid);
      int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                 IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
      if (int e = ::ibv_modify_qp(qp, &a, mask))
        fail(kumiSystemError, "RDMA transport: ", qpName(c, qi), ": to RTR (remote QP ", r.qpns[i], ", GID ",
             formatGid(r.gid), "): ", std::strerror(e));
      a = ibv_qp_attr{};
      a.qp_state = IBV_QPS_RTS;
      a.timeout = static_cast<std::uint8_t>(opt.ib.timeout);
      a.retry_cnt = static_cast<std::uint8_t>(opt.ib.retryCount);
      a.rnr_retry = 7;  // a missing receive is only ever late, never gone: wait for it
      a.sq_psn = myPsn;
      a.max_rd_atomic = 1;
      mask = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
             IBV_QP_MAX_QP_RD_ATOMIC;
      if (int e = ::ibv_modify_qp(qp, &a, mask))
        fail(kumiSystemError, "RDMA transport: ", qpName(c, qi), ": to RTS: ", std::strerror(e));
    }
  }

  void connect(const std::vector<int>& peers, const Deadline& deadline) {
    if (isShutdown) fail(kumiInvalidUsage, "RDMA transport used after shutdown");
    struct Fresh {
      Connection* c;
      std::uint32_t psn;
    };
    std::vector<Fresh> fresh;
    for (int p : peers) {
      if (p == opt.rank || conns.count(p)) continue;
      auto c = create(p);
      fresh.push_back({c.get(), static_cast<std::uint32_t>(random() & 0xffffff)});
      conns.emplace(p, std::move(c));
    }
    if (fresh.empty()) return;
    std::vector<int> ranks;
    std::vector<std::string> records;
    for (const auto& f : fresh) {
      ranks.push_back(f.c->peer);
      records.push_back(formatRecord(recordFor(*f.c, f.psn)));
    }
    try {
      bootstrap.connect(ranks, deadline);
    } catch (const LinkError&) {
      throw;  // names the peer already, and the communicator reports it as a lost peer
    } catch (const Error& e) {
      std::string list;
      for (int p : ranks) list += cat(list.empty() ? "" : ", ", p);
      fail(e.code(), "RDMA transport, rank ", opt.rank, ": connecting to rank ", list, " over TCP for its records: ",
           e.what());
    }
    const auto theirs = exchange(ranks, records, deadline, "send its RDMA connection record");
    for (std::size_t i = 0; i < fresh.size(); ++i) bringUp(*fresh[i].c, parseRecord(theirs[i], ranks[i]), fresh[i].psn);
    // A write that reaches a queue pair not yet ready to receive is dropped and retried only
    // after the ACK timeout: the first waits until the peer's side is up too.
    exchange(ranks, std::vector<std::string>(fresh.size(), "up"), deadline, "bring its RDMA queue pairs up");
    for (const auto& f : fresh) {
      bootstrap.postRecv(f.c->peer, &f.c->livenessByte, 1, &f.c->liveness);
      live.push_back(f.c);
      KUMI_TRACE("ib: rank ", opt.rank, " connected to rank ", f.c->peer, " (", f.c->peerWhere, ") over ", where(),
                 " with ", f.c->qps.size(), " QP(s)");
    }
  }

  Connection& connection(int peer) {
    auto it = conns.find(peer);
    if (it == conns.end() || it->second->remoteSlots == 0)
      fail(kumiInternalError, "RDMA transport: rank ", peer, " is not connected");
    return *it->second;
  }

  // Posts the write of staging slot `slot` (its first inSlot bytes, then n bytes of registered
  // memory at gather when reg is given) into the same slot of the peer's ring, with immediate.
  void postSlot(Connection& c, std::uint32_t slot, int qp, std::size_t inSlot, const Registration* reg,
                const char* gather, std::size_t n) {
    ibv_sge sge[2]{};
    sge[0].addr = reinterpret_cast<std::uintptr_t>(c.sendSlot(slot));
    sge[0].length = static_cast<std::uint32_t>(inSlot);
    sge[0].lkey = c.sendMr->lkey;
    if (reg) {
      sge[1].addr = reinterpret_cast<std::uintptr_t>(gather);
      sge[1].length = static_cast<std::uint32_t>(n);
      sge[1].lkey = reg->lkey;
    }
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = wrId(Work::kData, qp, slot);
    wr.sg_list = sge;
    wr.num_sge = reg ? 2 : 1;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(slot);
    wr.wr.rdma.remote_addr = c.remoteRing + static_cast<std::uint64_t>(slot) * c.remoteSlotBytes;
    wr.wr.rdma.rkey = c.remoteRkey;
    if (int e = ::ibv_post_send(c.qps[static_cast<std::size_t>(qp)].get(), &wr, &bad))
      linkFailed(c, qp, cat("posting an RDMA write failed: ", std::strerror(e)));
    ++c.sendsOut[static_cast<std::size_t>(qp)];
    c.stagingBusy[slot] = 1;
    ++c.written;
  }

  // Sender: fills free slots of the peer's ring from the send queue.
  bool pushSends(Connection& c, std::vector<Request*>& completed) {
    bool moved = false;
    const std::size_t payload = c.remoteSlotBytes - sizeof(SlotHeader);
    while (!c.sendq.empty()) {
      if (c.written - c.peerFreed >= static_cast<std::uint32_t>(c.remoteSlots)) break;  // no credit
      const std::uint32_t slot = c.written % static_cast<std::uint32_t>(c.remoteSlots);
      if (c.stagingBusy[slot]) break;
      const int qp = static_cast<int>(c.written % c.qps.size());
      if (c.sendsOut[static_cast<std::size_t>(qp)] >= c.sendDepth) break;
      SendItem& item = c.sendq.front();
      // A message the receiver wants in its GPU's memory goes there whole, if the NIC can read it.
      if (item.offset == 0 && item.bytes > 0 && !c.adverts.empty()) {
        const Direct d = pushDirect(c, item, slot, qp, completed);
        if (d == Direct::kWait) break;
        if (d == Direct::kSent) {
          moved = true;
          continue;
        }
      }
      const std::size_t n = std::min(payload, item.bytes - item.offset);
      char* at = c.sendSlot(slot);
      SlotHeader h{};
      h.magic = kSlotMagic;
      h.sequence = item.sequence;
      h.messageBytes = item.bytes;
      h.offset = item.offset;
      h.partBytes = static_cast<std::uint32_t>(n);
      h.stampLo = item.stamp.lo;
      h.stampHi = item.stamp.hi;
      // Registered device memory goes from the GPU whatever the size (the host cannot read it);
      // large parts of registered host buffers from the buffer itself; the rest through the slot.
      const Registration* reg = nullptr;
      bool fromDevice = false;
      if (n > 0 && deviceRegistrations.entries() > 0) {
        reg = deviceRegistrations.find(item.data + item.offset, n);
        fromDevice = reg != nullptr;
      }
      if (!reg && n >= kZeroCopyMinBytes) {
        dropUnmapped();
        reg = registrations.find(item.data + item.offset, n);
      }
      if (n && !reg) std::memcpy(at + sizeof h, item.data + item.offset, n);
      if (opt.checks.checksum) {
        h.flags |= kHasChecksum;
        h.checksum = crc32c(reg ? item.data + item.offset : at + sizeof h, n);
      }
      std::memcpy(at, &h, sizeof h);
      postSlot(c, slot, qp, reg ? sizeof h : sizeof h + n, reg, item.data + item.offset, n);
      if (reg) {
        (fromDevice ? deviceReadBytes : zeroCopyBytes) += n;
        ++item.req->partsLeft;  // until the NIC has read the user's bytes
        c.slotRequest[slot] = item.req;
      }
      item.offset += n;
      moved = true;
      // The user's bytes are in staging slots or being written from a registered buffer (whose
      // parts hold the request): the send is done as far as the copies are concerned.
      if (item.offset == item.bytes) {
        if (--item.req->partsLeft == 0) completed.push_back(item.req);
        c.sendq.pop_front();
      }
    }
    return moved;
  }

  // Receiver: copies arrived slots, in ring order, into the posted receives.
  bool pullReceives(Connection& c, std::vector<Request*>& completed) {
    bool moved = false;
    while (!c.recvq.empty()) {
      const std::uint32_t slot = c.consumed % static_cast<std::uint32_t>(c.slots);
      if (!c.arrived[slot]) break;
      RecvItem& item = c.recvq.front();
      char* at = c.recvSlot(slot);
      SlotHeader h;
      std::memcpy(&h, at, sizeof h);
      if (h.magic != kSlotMagic)
        linkFailed(c, 0, cat("slot ", slot, " holds no message (magic ", hex32(h.magic), "): corrupt ring"));
      if (CallStamp{h.stampLo, h.stampHi} != item.expect)
        throw CallMismatch(c.peer, item.expect, CallStamp{h.stampLo, h.stampHi});
      if (h.sequence != item.sequence)
        fail(kumiRemoteError, "rank ", opt.rank, ": rank ", c.peer, " sent message #", h.sequence, " where #",
             item.sequence, " was expected: the ranks' schedules disagree");
      if (h.messageBytes != item.bytes)
        fail(kumiRemoteError, "rank ", opt.rank, ": rank ", c.peer, " sent a message of ", h.messageBytes,
             " bytes where ", item.bytes,
             " were expected: the ranks called different collectives or disagree on count or data type");
      if (h.flags & kDirect) {
        // The bytes are in the device buffer this receive advertised: only the header came here.
        if (!item.advertised || item.offset != 0 || h.offset != 0 || h.partBytes != 0)
          linkFailed(c, 0, cat("message #", h.sequence, " was written into GPU memory this receive never offered: corrupt ring"));
        item.req->landedOnDevice = true;
        item.offset = item.bytes;
        directBytesIn += item.bytes;
        c.arrived[slot] = 0;
        ++c.consumed;
        moved = true;
        finishReceive(c, completed);
        continue;
      }
      if (h.offset != item.offset || h.partBytes > item.bytes - item.offset ||
          h.partBytes > c.slotBytes - sizeof(SlotHeader))
        linkFailed(c, 0, cat("part at offset ", h.offset, " of ", h.partBytes, " bytes where offset ", item.offset,
                             " was next: corrupt ring"));
      char* bytes = at + sizeof h;
      injectCorruption(opt.checks, partsReceived, bytes, h.partBytes);
      if (h.flags & kHasChecksum) {
        const std::uint32_t got = crc32c(bytes, h.partBytes);
        if (got != h.checksum)
          throw LinkError(c.peer, cat("rank ", opt.rank, ": data corrupted on the RDMA link from rank ", c.peer, " (",
                                      qpName(c, 0), "): ", h.partBytes, "-byte part of message #", h.sequence,
                                      ": CRC32C sent ", hex32(h.checksum), ", received ", hex32(got)));
      }
      if (h.partBytes) std::memcpy(item.data + item.offset, bytes, h.partBytes);
      item.offset += h.partBytes;
      c.arrived[slot] = 0;
      ++c.consumed;
      moved = true;
      if (item.offset == item.bytes) finishReceive(c, completed);
    }
    return moved;
  }

  static void finishReceive(Connection& c, std::vector<Request*>& completed) {
    RecvItem& item = c.recvq.front();
    if (item.advertised) --c.advertsOpen;  // its advert entry may be written again
    else if (item.device != nullptr) --c.unadvertised;  // it came through the ring before its advert went
    if (--item.req->partsLeft == 0) completed.push_back(item.req);
    c.recvq.pop_front();
  }

  // Returns read slots to the sender. Always on QP 0, whose order keeps credits monotonic.
  void returnCredits(Connection& c) {
    if (c.consumed == c.reported || c.sendsOut[0] >= c.sendDepth) return;
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = wrId(Work::kCredit, 0, 0);
    wr.num_sge = 0;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(c.consumed);
    if (int e = ::ibv_post_send(c.qps[0].get(), &wr, &bad))
      linkFailed(c, 0, cat("posting a credit failed: ", std::strerror(e)));
    ++c.sendsOut[0];
    c.reported = c.consumed;
  }

  // Sender: an advert arrived in entry e; kept if it is whole and not for a message already gone.
  void takeAdvert(Connection& c, std::uint32_t e) {
    if (e >= kAdverts) linkFailed(c, 0, cat("a receive advert in entry ", e, " of ", kAdverts, ": corrupt advert area"));
    Advert a;
    std::memcpy(&a, c.advertIn(e), sizeof a);
    if (a.magic != kAdvertMagic || a.crc != advertCrc(a)) return;  // torn by the next one: that one counts
    // Receives are often offered before their sends are posted; one already started goes by slots.
    if (static_cast<std::int32_t>(a.sequence - nextToStart(c)) < 0) return;
    // In message order: an entry rewritten before its first completion was polled is read for
    // that completion with the newer advert, so adverts may be taken out of order (or twice).
    auto at = c.adverts.begin();
    while (at != c.adverts.end() && static_cast<std::int32_t>(at->sequence - a.sequence) < 0) ++at;
    if (at != c.adverts.end() && at->sequence == a.sequence) return;
    c.adverts.insert(at, a);
  }

  // The message number of the first send not yet started (the next whose bytes may go direct).
  static std::uint32_t nextToStart(const Connection& c) {
    for (const SendItem& item : c.sendq)
      if (item.offset == 0) return item.sequence;
    return c.sendSeq;
  }

  // Receiver: tells the sender where device receives may be written, in message order.
  void advertise(Connection& c) {
    if (c.unadvertised == 0) return;
    for (RecvItem& item : c.recvq) {
      if (item.advertised || item.device == nullptr) continue;
      const std::uint32_t e = c.advertsSent % kAdverts;
      if (c.advertsOpen >= kAdverts || c.sendsOut[0] >= c.sendDepth || c.advertBusy[e]) return;
      --c.unadvertised;
      const Registration* reg = deviceRegistrations.find(item.device, item.bytes);
      if (reg == nullptr) {  // deregistered since: the bytes come through the ring
        item.device = nullptr;
        continue;
      }
      // Written from our own entry e, which the NIC reads until the write completes.
      char* out = c.advertOut(e);
      Advert a{kAdvertMagic, item.sequence, reinterpret_cast<std::uintptr_t>(item.device), item.bytes, reg->rkey, 0};
      a.crc = advertCrc(a);
      std::memcpy(out, &a, sizeof a);
      ibv_sge sge{reinterpret_cast<std::uintptr_t>(out), sizeof a, c.recvMr->lkey};
      ibv_send_wr wr{};
      ibv_send_wr* bad = nullptr;
      wr.wr_id = wrId(Work::kAdvert, 0, e);
      wr.sg_list = &sge;
      wr.num_sge = 1;
      wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.imm_data = htonl(kAdvertTag | e);
      wr.wr.rdma.remote_addr = c.remoteRing + static_cast<std::uint64_t>(c.remoteSlots) * c.remoteSlotBytes + e * sizeof(Advert);
      wr.wr.rdma.rkey = c.remoteRkey;
      if (int err = ::ibv_post_send(c.qps[0].get(), &wr, &bad))
        linkFailed(c, 0, cat("posting a receive advert failed: ", std::strerror(err)));
      ++c.sendsOut[0];
      ++c.advertsSent;
      ++c.advertsOpen;
      c.advertBusy[e] = 1;
      item.advertised = true;
    }
  }

  // Sender: writes a whole message into the receiver's advertised device buffer, then its header
  // into a slot on the same queue pair (whose in-order delivery puts the bytes there first).
  // kSlots when it goes through the ring instead (no advert for it, or a source the NIC cannot
  // read), kWait when the queue pair has no room for it yet.
  enum class Direct { kSent, kSlots, kWait };
  Direct pushDirect(Connection& c, SendItem& item, std::uint32_t slot, int qp, std::vector<Request*>& completed) {
    while (!c.adverts.empty() && static_cast<std::int32_t>(c.adverts.front().sequence - item.sequence) < 0)
      c.adverts.pop_front();  // for messages that went by slots
    if (c.adverts.empty() || c.adverts.front().sequence != item.sequence) return Direct::kSlots;
    const Advert a = c.adverts.front();
    if (a.bytes != item.bytes) {  // the ranks disagree: the receiver's size check will say so
      c.adverts.pop_front();
      return Direct::kSlots;
    }
    bool fromDevice = false;
    const Registration* src = deviceRegistrations.find(item.data, item.bytes);
    if (src != nullptr) {
      fromDevice = true;
    } else {
      dropUnmapped();
      src = registrations.find(item.data, item.bytes);
    }
    if (src == nullptr || opt.checks.checksum) return Direct::kSlots;  // a direct write carries no CRC
    const std::size_t pieces = (item.bytes + kMaxWriteBytes - 1) / kMaxWriteBytes;
    if (static_cast<int>(pieces) + 1 > c.sendDepth) return Direct::kSlots;  // never fits the queue pair
    if (c.sendsOut[static_cast<std::size_t>(qp)] + static_cast<int>(pieces) + 1 > c.sendDepth) return Direct::kWait;
    c.adverts.pop_front();
    for (std::size_t k = 0; k < pieces; ++k) {
      const std::size_t off = k * kMaxWriteBytes, n = std::min(kMaxWriteBytes, item.bytes - off);
      ibv_sge sge{reinterpret_cast<std::uintptr_t>(item.data + off), static_cast<std::uint32_t>(n), src->lkey};
      ibv_send_wr wr{};
      ibv_send_wr* bad = nullptr;
      wr.wr_id = wrId(Work::kDirect, qp, slot);
      wr.sg_list = &sge;
      wr.num_sge = 1;
      wr.opcode = IBV_WR_RDMA_WRITE;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.wr.rdma.remote_addr = a.address + off;
      wr.wr.rdma.rkey = a.rkey;
      if (int e = ::ibv_post_send(c.qps[static_cast<std::size_t>(qp)].get(), &wr, &bad))
        linkFailed(c, qp, cat("posting an RDMA write into rank ", c.peer, "'s GPU memory failed: ", std::strerror(e)));
      ++c.sendsOut[static_cast<std::size_t>(qp)];
    }
    char* at = c.sendSlot(slot);
    SlotHeader h{};
    h.magic = kSlotMagic;
    h.sequence = item.sequence;
    h.messageBytes = item.bytes;
    h.stampLo = item.stamp.lo;
    h.stampHi = item.stamp.hi;
    h.flags = kDirect;
    std::memcpy(at, &h, sizeof h);
    postSlot(c, slot, qp, sizeof h, nullptr, nullptr, 0);
    (fromDevice ? deviceReadBytes : zeroCopyBytes) += item.bytes;
    directBytes += item.bytes;
    ++item.req->partsLeft;  // until the NIC has read the bytes and the header
    c.slotRequest[slot] = item.req;
    item.offset = item.bytes;
    if (--item.req->partsLeft == 0) completed.push_back(item.req);
    c.sendq.pop_front();
    return Direct::kSent;
  }

  void handle(Connection& c, const ibv_wc& wc, std::vector<Request*>& completed) {
    const int qp = qpOf(wc.wr_id);
    if (wc.status != IBV_WC_SUCCESS) {
      const Work w = workOf(wc.wr_id);
      const char* doing = w == Work::kData     ? "an RDMA write"
                          : w == Work::kDirect ? "an RDMA write into the peer's GPU memory"
                          : w == Work::kAdvert ? "a receive advert (RDMA write)"
                          : w == Work::kCredit ? "a credit send"
                          : w == Work::kProbe  ? "a liveness probe (zero-byte RDMA write)"
                                               : "a receive";
      linkFailed(c, qp, cat(doing, " failed: ", statusText(wc.status), ", vendor error ", wc.vendor_err,
                            wc.status == IBV_WC_RETRY_EXC_ERR ? " (the peer stopped answering: dead, or a broken path)"
                                                              : ""));
    }
    switch (workOf(wc.wr_id)) {
      case Work::kData: {
        const std::uint32_t slot = slotOf(wc.wr_id);
        c.stagingBusy[slot] = 0;
        --c.sendsOut[static_cast<std::size_t>(qp)];
        if (Request* r = std::exchange(c.slotRequest[slot], nullptr); r && --r->partsLeft == 0) completed.push_back(r);
        break;
      }
      case Work::kAdvert:
        c.advertBusy[slotOf(wc.wr_id)] = 0;
        --c.sendsOut[static_cast<std::size_t>(qp)];
        break;
      case Work::kCredit:
      case Work::kDirect:
        --c.sendsOut[static_cast<std::size_t>(qp)];
        break;
      case Work::kProbe:
        --c.sendsOut[static_cast<std::size_t>(qp)];
        c.probing = false;
        break;
      case Work::kRecv: {
        const std::uint32_t imm = ntohl(wc.imm_data);
        if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM && (imm & kAdvertTag)) {
          takeAdvert(c, imm & ~kAdvertTag);
        } else if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
          if (imm >= static_cast<std::uint32_t>(c.slots) || c.arrived[imm])
            linkFailed(c, qp, cat("a write into slot ", imm, " that is not free: corrupt ring"));
          c.arrived[imm] = 1;
        } else if (c.written - imm <= c.written - c.peerFreed) {
          c.peerFreed = imm;  // credits come in order on QP 0; never move back
        }
        postRecv(c, qp);
        break;
      }
    }
  }

  bool pollCompletions(Connection& c, std::vector<Request*>& completed) {
    bool any = false;
    for (const auto& wc : c.stash) handle(c, wc, completed), any = true;
    c.stash.clear();
    ibv_wc wc[32];
    for (;;) {
      const int n = ::ibv_poll_cq(c.cq.get(), 32, wc);
      if (n < 0) linkFailed(c, 0, "polling the completion queue failed");
      for (int i = 0; i < n; ++i) handle(c, wc[i], completed);
      any = any || n > 0;
      if (n < 32) break;
    }
    if (any) c.lastHeard = std::chrono::steady_clock::now();
    return any;
  }

  void probeIfSilent(Connection& c) {
    if (c.probing || (c.recvq.empty() && c.sendq.empty()) || c.sendsOut[0] >= c.sendDepth) return;
    if (std::chrono::steady_clock::now() - c.lastHeard < std::chrono::seconds(1)) return;
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = wrId(Work::kProbe, 0, 0);
    wr.num_sge = 0;
    wr.opcode = IBV_WR_RDMA_WRITE;  // no immediate: it consumes no receive at the peer
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = c.remoteRing;
    wr.wr.rdma.rkey = c.remoteRkey;
    if (int e = ::ibv_post_send(c.qps[0].get(), &wr, &bad))
      linkFailed(c, 0, cat("posting a liveness probe failed: ", std::strerror(e)));
    ++c.sendsOut[0];
    c.probing = true;
  }

  bool progress(std::vector<Request*>& completed) {
    if (isShutdown) return false;
    bool moved = false;
    for (Connection* c : live) {
      moved |= pollCompletions(*c, completed);
      moved |= pullReceives(*c, completed);
      advertise(*c);
      returnCredits(*c);
      moved |= pushSends(*c, completed);
      probeIfSilent(*c);
    }
    // After the queue pairs: bytes a peer wrote before it left are taken first.
    watchBootstrap();
    return moved;
  }

  static bool needsPeer(const Connection& c) {
    return !c.recvq.empty() || !c.sendq.empty() ||
           std::any_of(c.slotRequest.begin(), c.slotRequest.end(), [](Request* r) { return r != nullptr; });
  }

  // The bootstrap connections' standing receives: a lost peer fails what still needs it.
  void watchBootstrap() {
    for (;;) {
      try {
        bootstrapDone.clear();
        bootstrap.progress(bootstrapDone);
        break;
      } catch (const PeerFailed&) {
        throw;  // the peer's own story: the root cause, told as it is
      } catch (const PeerLost& e) {
        auto it = conns.find(e.peer);
        if (it == conns.end() || it->second->qps.empty()) throw;
        Connection& c = *it->second;
        const std::string why = cat("RDMA transport, rank ", opt.rank, ": ", qpName(c, 0), ": ", e.what());
        if (needsPeer(c)) throw PeerLost(e.peer, why);
        bootstrap.cancelRecv(e.peer, &c.liveness);
        c.gone = why;
      }
    }
    for (Connection* c : live)
      if (!c->gone.empty() && needsPeer(*c)) throw PeerLost(c->peer, c->gone);
  }

  // The device's own events: a port going down or a QP turning fatal is said once, loudly; the
  // work requests that fail because of it name the peer. Read when the wait says some came, so
  // that the polling loop makes no system call for them.
  void drainAsyncEvents() {
    ibv_async_event ev;
    while (::ibv_get_async_event(ctx.get(), &ev) == 0) {
      KUMI_WARN("RDMA transport, rank ", opt.rank, ": ", where(), ": ", ::ibv_event_type_str(ev.event_type));
      const bool fatal = ev.event_type == IBV_EVENT_DEVICE_FATAL;
      ::ibv_ack_async_event(&ev);
      if (fatal) fail(kumiSystemError, "RDMA transport, rank ", opt.rank, ": ", where(), " reported a fatal error");
    }
  }

  void waitForEvents(int timeoutMs) {
    if (isShutdown || timeoutMs <= 0) return;
    // Arm every CQ, then look once more: a completion that came in before the arming raises no
    // event, so it is stashed for progress() and the wait is skipped.
    bool ready = false;
    for (Connection* c : live) {
      if (::ibv_req_notify_cq(c->cq.get(), 0) != 0) continue;
      ibv_wc wc[8];
      const int n = ::ibv_poll_cq(c->cq.get(), 8, wc);
      if (n > 0) {
        c->stash.insert(c->stash.end(), wc, wc + n);
        ready = true;
      }
    }
    if (ready || interrupted.load()) return;
    pollfd fds[4] = {{channel->fd, POLLIN, 0},
                     {wakeFd.get(), POLLIN, 0},
                     {ctx->async_fd, POLLIN, 0},
                     {bootstrap.eventFd(), POLLIN, 0}};
    ::poll(fds, fds[3].fd >= 0 ? 4 : 3, timeoutMs);
    if (fds[1].revents) {
      std::uint64_t v;
      [[maybe_unused]] auto r = ::read(wakeFd.get(), &v, sizeof v);
    }
    if (fds[2].revents) drainAsyncEvents();
    if (fds[3].fd < 0 || fds[3].revents) bootstrap.waitForEvents(0);
    ibv_cq* cq = nullptr;
    void* context = nullptr;
    while (::ibv_get_cq_event(channel.get(), &cq, &context) == 0) ::ibv_ack_cq_events(cq, 1);
  }
};

IbAvailability probeIb(const IbOptions& options) {
  IbAvailability a;
  const auto ports = findPorts(options.hca, &a.why);
  for (const PortInfo& p : ports) a.devices.push_back(p.device);
  a.usable = !ports.empty();
  if (a.usable) a.linkLayer = ports.front().linkLayer();
  return a;
}

IbTransport::IbTransport(const IbTransportOptions& options, Transport& bootstrap)
    : impl_(std::make_unique<Impl>(options, bootstrap)) {
  KUMI_INFO("rank ", options.rank, ": RDMA transport on ", describe(), ": ", impl_->gidReason);
}

IbTransport::~IbTransport() {
  // What GPUDirect RDMA carried, for operators checking that it is used (and tests reading logs).
  const Impl& i = *impl_;
  if (i.gdr && i.gdr->mechanism != GdrMechanism::Staging)
    KUMI_INFO("rank ", i.opt.rank, ": GPUDirect RDMA on ", i.where(), " (", gdrMechanismName(i.gdr->mechanism), "): ",
              i.deviceReadBytes, " bytes sent from GPU memory, ", i.directBytes, " written into peers' GPU memory, ",
              i.directBytesIn, " received into GPU memory");
}

std::string IbTransport::describe() const {
  const auto& i = *impl_;
  return cat(i.where(), i.port.ethernet ? cat(" GID ", i.gidIndex, " (", i.gidText, ")") : cat(" LID ", i.port.lid),
             ", ", i.opt.ib.qpsPerConnection, " QP(s) per peer, ", i.opt.ib.slots, " x ", i.opt.ib.slotBytes >> 10,
             " KiB slots");
}

void IbTransport::connect(const std::vector<int>& peers, const Deadline& deadline) { impl_->connect(peers, deadline); }

void IbTransport::setCallStamp(const CallStamp& stamp) { impl_->stamp = stamp; }

void IbTransport::postSend(int peer, const void* data, std::size_t bytes, Request* req) {
  Connection& c = impl_->connection(peer);
  ++req->partsLeft;
  c.sendq.push_back({req, static_cast<const char*>(data), bytes, 0, c.sendSeq++, impl_->stamp});
}

void IbTransport::postRecv(int peer, void* data, std::size_t bytes, Request* req) {
  Connection& c = impl_->connection(peer);
  ++req->partsLeft;
  req->landedOnDevice = false;
  c.recvq.push_back({req, static_cast<char*>(data), bytes, 0, c.recvSeq++, impl_->stamp});
}

void IbTransport::postRecvDevice(int peer, void* host, void* device, std::size_t bytes, Request* req) {
  Connection& c = impl_->connection(peer);
  ++req->partsLeft;
  req->landedOnDevice = false;
  const bool offer = bytes > 0 && impl_->deviceRegistrations.find(device, bytes) != nullptr;
  c.recvq.push_back({req, static_cast<char*>(host), bytes, 0, c.recvSeq++, impl_->stamp,
                     offer ? static_cast<char*>(device) : nullptr});
  if (offer) ++c.unadvertised;
  impl_->advertise(c);
}

bool IbTransport::progress(std::vector<Request*>& completed) { return impl_->progress(completed); }

void IbTransport::waitForEvents(int timeoutMs) { impl_->waitForEvents(timeoutMs); }

void IbTransport::interrupt() {
  impl_->interrupted.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(impl_->wakeFd.get(), &one, sizeof one);
}

// A failing rank's story reaches its peers through the store (the communicator posts it there
// first) and the bootstrap transport's last frame; moving the queue pairs to the error state in
// shutdown() makes the peers' writes fail within the retry time.
void IbTransport::publishFailure(const std::string&) {}

void IbTransport::shutdown() {
  auto& i = *impl_;
  if (i.isShutdown) return;
  i.isShutdown = true;
  // To the error state: posted work flushes at once instead of waiting on a peer.
  for (Connection* c : i.live)
    for (auto& qp : c->qps) {
      ibv_qp_attr a{};
      a.qp_state = IBV_QPS_ERR;
      ::ibv_modify_qp(qp.get(), &a, IBV_QP_STATE);
    }
}

void IbTransport::cancelAll() {
  for (Connection* c : impl_->live) {
    c->sendq.clear();
    c->recvq.clear();
    c->advertsOpen = c->unadvertised = 0;  // their receives are gone; a sender matches adverts by message number
    std::fill(c->slotRequest.begin(), c->slotRequest.end(), nullptr);
  }
}

std::uint64_t IbTransport::registerBuffer(void* data, std::size_t bytes) {
  impl_->dropUnmapped();  // a buffer freed and allocated again at the same place gets a new registration
  return impl_->registrations.add(data, bytes);
}

bool IbTransport::deregisterBuffer(std::uint64_t handle) {
  return handle >= kDeviceHandleBase ? impl_->deviceRegistrations.remove(handle) : impl_->registrations.remove(handle);
}

std::uint64_t IbTransport::registerDeviceBuffer(void* data, std::size_t bytes, gpu::Device& device, int deviceIndex) {
  if (!impl_->gdr) impl_->chooseGdrFor(device, deviceIndex);
  if (impl_->gdr->mechanism == GdrMechanism::Staging) return 0;
  return impl_->deviceRegistrations.add(data, bytes);
}

bool IbTransport::readsDevice(int /*peer*/) const { return impl_->deviceRegistrations.entries() > 0; }

std::uint64_t IbTransport::deviceReadBytes() const { return impl_->deviceReadBytes; }

std::uint64_t IbTransport::directBytesSent() const { return impl_->directBytes; }

std::uint64_t IbTransport::directBytesReceived() const { return impl_->directBytesIn; }

std::size_t IbTransport::registrations() const { return impl_->registrations.entries(); }

std::uint64_t IbTransport::zeroCopyBytes() const { return impl_->zeroCopyBytes; }

}  // namespace kumi
