#include "transports/shm/shm_transport.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <random>

#include "core/crc32c.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "core/strings.hpp"
#include "rendezvous/bootstrap.hpp"
#include "transports/shm/layout_check.hpp"
#include "transports/shm/segment.hpp"

namespace kumi {
using namespace shm;

namespace {

constexpr std::uint32_t kSlots = 8;
constexpr std::size_t kLine = 64;
// How often a rank blocked on shared memory checks that the peers it waits for still live.
constexpr auto kLivenessPeriod = std::chrono::milliseconds(100);

enum SlotKind : std::uint32_t { kInline = 1, kDescriptor = 2, kDevice = 3 };
constexpr std::uint32_t kKindMask = 0xff;
constexpr std::uint32_t kHasChecksum = 0x100;  // flag in Slot::kind

// A slot is full when its seq is the number of the message part it holds plus one: receivers
// poll the slot itself, so a small message costs the receiver one or two cache lines, and
// stale slots of an earlier lap never match.
struct alignas(kLine) Slot {
  std::atomic<std::uint64_t> seq;
  std::uint64_t messageBytes;  // whole message, checked against the posted receive
  std::uint64_t offset;        // of this fragment in the message (inline)
  std::uint64_t bytes;         // of this fragment (inline)
  std::uint64_t address;       // in the sender's address space (descriptor)
  std::uint32_t kind;          // SlotKind, plus kHasChecksum
  std::uint32_t checksum;      // CRC32C of the fragment (inline) or of the whole message (descriptor)
  CallStamp stamp;             // the sender's call (transport.hpp)
};
static_assert(sizeof(Slot) == kLine, "a slot's header must stay one cache line: receivers poll it");

// The receiver's tail on its own cache line: senders read it only when the ring looks full or a
// descriptor waits to be read.
struct alignas(kLine) Channel {
  alignas(kLine) std::atomic<std::uint64_t> tail;
  alignas(kLine) std::int32_t fromRank;
  std::atomic<std::uint32_t> crossMemory;  // the receiver reads descriptors of this sender
  Slot slots[kSlots];
};

constexpr std::size_t kStoryBytes = 1024;
constexpr std::size_t kMaxReadableGpus = 32, kBusIdBytes = 16;
static_assert(sizeof(DeviceMessage) <= 4096, "a device message's name must fit the smallest slot");

struct alignas(kLine) Control {
  alignas(kLine) std::atomic<std::uint32_t> doorbell;  // futex word, bumped by every notifier
  std::atomic<std::uint32_t> sleeping;
  std::atomic<std::uint32_t> closed;
  std::atomic<std::uint32_t> devicePull;  // this rank maps device memory sent to it (kDevice slots)
  // With devicePull: this rank's GPU and the others it can read (PCI bus ids, NUL-padded): a
  // sender whose GPU is not among them sends bytes.
  std::uint32_t readableCount;
  char readable[kMaxReadableGpus][kBusIdBytes];
  std::int32_t rank;
  std::int32_t channels;
  std::uint64_t slotBytes;
  std::uint64_t probeAddress;  // where peers test cross-memory attach, and what they must read
  std::uint64_t probeValue;
  // A failing rank's story, written before `closed` is set: peers that see it go name the root
  // cause from here even when the rendezvous store is gone.
  std::atomic<std::uint32_t> storyBytes;
  char story[kStoryBytes];
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "shared-memory counters must be lock-free to work across processes");

constexpr std::size_t align(std::size_t n) { return (n + kLine - 1) / kLine * kLine; }
constexpr std::size_t kControlOffset = align(sizeof(SegmentOwner));
constexpr std::size_t kChannelsOffset = kControlOffset + align(sizeof(Control));

std::size_t channelStride(std::size_t slotBytes) { return align(sizeof(Channel)) + kSlots * slotBytes; }

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value, const timespec* timeout) {
  // Shared (not FUTEX_PRIVATE) operations: the word lives in memory mapped by several processes.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout, nullptr, 0);
}

void done(Request* r, std::vector<Request*>& completed) {
  r->partsLeft = 0;
  completed.push_back(r);
}

void wake(Control* c) {
  c->doorbell.fetch_add(1, std::memory_order_seq_cst);
  futex(&c->doorbell, FUTEX_WAKE, INT_MAX, nullptr);
}

// After publishing: wakes the peer only if it sleeps (or is about to). The fence pairs with the
// one in waitForEvents: either the peer sees what we published, or we see it going to sleep.
void notify(Control* c) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c->sleeping.load(std::memory_order_relaxed)) wake(c);
}

struct SendOp {
  Request* req;
  const std::byte* data;
  std::size_t bytes;
  CallStamp stamp;
  std::size_t offset = 0;
  bool isDevice = false;  // a kDevice message: device names the sender's memory
  DeviceMessage device{};
};
struct RecvOp {
  Request* req;
  std::byte* data;
  std::size_t bytes;
  CallStamp expect;
  std::size_t offset = 0;
  bool acceptsDevice = false;  // posted with postRecvAny
};

struct Link {
  int rank = -1;
  pid_t pid = 0;
  Fd pidfd;         // readable once the peer exits; -1 where pidfd_open is not available
  Segment segment;  // the peer's
  Control* peer = nullptr;
  Channel* out = nullptr;  // ours, in the peer's segment
  std::byte* outData = nullptr;
  Channel* in = nullptr;  // the peer's, in our segment
  std::byte* inData = nullptr;
  bool usable = false;
  std::uint64_t head = 0;        // next slot we fill in out
  std::uint64_t cachedTail = 0;  // out->tail as last read
  std::uint64_t recvTail = 0;    // next slot we read in in
  std::deque<SendOp> sends;
  std::deque<RecvOp> recvs;
  std::deque<std::pair<std::uint64_t, Request*>> awaitingRead;  // descriptor slot, request
  DeviceMessage deviceIn;               // the kDevice message being read by our caller
  bool holding = false;                 // deviceIn's slot stays until releaseDevice
  bool pending() const { return !sends.empty() || !recvs.empty() || !awaitingRead.empty(); }
};

bool exited(const Link& l);

}  // namespace

std::string shmSegmentPrefix(const std::string& jobId, int generation, const std::string& commId) {
  std::string job;
  for (char c : jobId.substr(0, 32)) job += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  const std::string hash = hex32(static_cast<std::uint32_t>(fnv1a(commId)));
  return cat("kumi-", job.empty() ? "job" : job, "-g", generation, "-", hash);
}

namespace shm {

std::size_t channelOffset(std::size_t slotBytes, std::size_t index) { return kChannelsOffset + index * channelStride(slotBytes); }

std::size_t segmentBytes(std::size_t slotBytes, int localPeers) {
  return channelOffset(slotBytes, static_cast<std::size_t>(localPeers));
}

std::size_t checkPeerLayout(const std::byte* data, std::size_t size, std::size_t slotBytes, int localPeers, int myRank,
                            int peerRank, const std::string& path) {
  if (size < kChannelsOffset) fail(kumiSystemError, path, " is truncated");
  const auto* peer = reinterpret_cast<const Control*>(data + kControlOffset);
  if (peer->slotBytes != slotBytes)
    fail(kumiInvalidArgument, "rank ", peerRank, " uses ", peer->slotBytes, "-byte shared-memory slots, this rank ",
         slotBytes, " (KUMI_SHM_BUFFER must be the same on every rank)");
  // The peer sees the same local ranks we do (same host id); a segment of any other shape is not
  // trusted to index memory.
  if (peer->channels != localPeers || size != segmentBytes(slotBytes, localPeers))
    fail(kumiSystemError, "rank ", peerRank, "'s segment has ", peer->channels, " channels and ", size,
         " bytes, not the layout of ", localPeers, " local peers (ranks disagree on who shares this host?)");
  std::size_t mine = SIZE_MAX;
  for (std::size_t i = 0; i < static_cast<std::size_t>(localPeers); ++i)
    if (reinterpret_cast<const Channel*>(data + channelOffset(slotBytes, i))->fromRank == myRank) mine = i;
  if (mine == SIZE_MAX) fail(kumiSystemError, "rank ", peerRank, "'s segment has no channel for rank ", myRank);
  return mine;
}

void writeLayout(std::byte* data, std::size_t slotBytes, int rank, const std::vector<int>& localPeers) {
  auto* ctl = reinterpret_cast<Control*>(data + kControlOffset);
  ctl->rank = rank;
  ctl->channels = static_cast<std::int32_t>(localPeers.size());
  ctl->slotBytes = slotBytes;
  for (std::size_t i = 0; i < localPeers.size(); ++i)
    reinterpret_cast<Channel*>(data + channelOffset(slotBytes, i))->fromRank = localPeers[i];
}

bool inlineFragmentFits(std::uint64_t offset, std::uint64_t bytes, std::size_t slotBytes, std::size_t opOffset,
                        std::size_t opBytes) {
  return offset == opOffset && bytes <= slotBytes && opOffset <= opBytes && bytes <= opBytes - opOffset;
}

}  // namespace shm

struct ShmTransport::Impl {
  ShmOptions opt;
  std::size_t slotBytes = 0;
  Segment own;
  Control* ctl = nullptr;
  std::vector<Link> links;       // indexed like opt.localPeers
  std::map<int, Link*> byRank;   // usable links only
  std::vector<int> connected, crossMemory;
  std::uint64_t probe = 0;       // read by peers to test cross-memory attach
  std::atomic<bool> interrupted{false};
  bool isShutdown = false;
  std::chrono::steady_clock::time_point lastLivenessCheck{};
  std::string deadPeer;          // set by a liveness check, thrown by the next progress()
  int deadPeerRank = -1;
  CallStamp stamp;               // of the call whose messages are being posted
  std::uint32_t partsReceived = 0;  // for WireChecks::corruptEvery
  ShmTransport::DevicePuller puller;  // reads a kDevice message into host memory (plain receives)
  std::string gpu;                    // this rank's GPU (bus id), once it reads device messages

  Channel* channelAt(std::byte* base, int index) const {
    return reinterpret_cast<Channel*>(base + kChannelsOffset + static_cast<std::size_t>(index) * channelStride(slotBytes));
  }
  std::byte* slotData(Channel* ch, std::uint64_t seq) const {
    return reinterpret_cast<std::byte*>(ch) + align(sizeof(Channel)) + (seq % kSlots) * slotBytes;
  }
  Link& link(int peer, const char* what) {
    auto it = byRank.find(peer);
    if (it == byRank.end()) fail(kumiInternalError, "shm ", what, " to rank ", peer, ", which is not a shared-memory peer");
    return *it->second;
  }

  void setUp(Store& store, const Deadline& deadline, const std::atomic<bool>* cancel);
  // The peer is gone: fails with the story it left, if it left one, else with `what`.
  template <class... Args>
  [[noreturn]] void lost(const Link& l, const Args&... what) {
    const std::uint32_t n = l.peer ? l.peer->storyBytes.load(std::memory_order_acquire) : 0;
    if (n > 0 && n <= kStoryBytes) failPeerFailed(l.rank, std::string(l.peer->story, n));
    failPeerLost(l.rank, what...);
  }
  // Checks what just arrived against the sender's checksum, when it sent one.
  void verify(const Link& l, const Slot& s, std::byte* data, std::size_t bytes, const char* what) {
    injectCorruption(opt.checks, partsReceived, data, bytes);
    if (!(s.kind & kHasChecksum)) return;
    const std::uint32_t got = crc32c(data, bytes);
    if (got != s.checksum)
      failLink(l.rank, "rank ", opt.rank, ": data from rank ", l.rank, " arrived corrupted over shared memory (a ",
           bytes, "-byte ", what, ": CRC32C sent ", hex32(s.checksum), ", received ", hex32(got),
           "): memory or the copy between these two ranks damaged it");
  }
  // After reading a peer's memory in place (its buffer, or its device memory): a peer that
  // failed sets `closed` before it frees its buffers, so what was just read may be garbage and
  // must not count as delivered; a peer killed meanwhile sets nothing, and its pid could be
  // reused: its pidfd is asked too.
  void checkStillThere(const Link& l, const char* what) {
    if (l.peer->closed.load(std::memory_order_seq_cst) || exited(l))
      lost(l, "rank ", l.rank, " failed while this rank read its ", what);
  }
  void attach(Link& l, const std::string& value);
  bool pump(Link& l, std::vector<Request*>& completed);
  bool canMove(const Link& l) const;
  void checkLiveness();
};

namespace {
std::size_t slotBytesFor(std::size_t channelBytes) { return std::max<std::size_t>(4096, channelBytes / kSlots / 64 * 64); }
}  // namespace

std::size_t shmEagerBytes(std::size_t channelBytes) { return kSlots * slotBytesFor(channelBytes); }

ShmTransport::ShmTransport(const ShmOptions& opt, Store& store, const Deadline& deadline, const std::atomic<bool>* cancel)
    : impl_(std::make_unique<Impl>()) {
  impl_->opt = opt;
  std::sort(impl_->opt.localPeers.begin(), impl_->opt.localPeers.end());
  impl_->slotBytes = slotBytesFor(opt.channelBytes);
  impl_->setUp(store, deadline, cancel);
}

ShmTransport::~ShmTransport() { shutdown(); }

const std::vector<int>& ShmTransport::connectedPeers() const { return impl_->connected; }
const std::vector<int>& ShmTransport::crossMemoryPeers() const { return impl_->crossMemory; }

void ShmTransport::Impl::setUp(Store& store, const Deadline& deadline, const std::atomic<bool>* cancel) {
  const int me = opt.rank;
  const int n = static_cast<int>(opt.localPeers.size());
  links.resize(opt.localPeers.size());
  // A random part: nobody can plant a file under a name we will use, and two jobs that share
  // a job id on one host never meet. Peers learn the name through the store.
  char nonce[17];
  std::snprintf(nonce, sizeof nonce, "%016llx",
                static_cast<unsigned long long>(std::random_device{}()) << 32 | std::random_device{}());
  const std::string name = cat(opt.segmentPrefix, "-r", me, '-', nonce);
  try {
    own = Segment::create(opt.dir, name, kChannelsOffset + static_cast<std::size_t>(n) * channelStride(slotBytes));
  } catch (const Error& e) {
    // The peers wait for this key: give them the cause instead of a timeout.
    store.set(cat("shm/", me), cat("error rank ", me, ": ", e.what()));
    throw;
  }
  writeLayout(own.data(), slotBytes, me, opt.localPeers);
  ctl = reinterpret_cast<Control*>(own.data() + kControlOffset);
  probe = own.owner().token;
  ctl->probeAddress = reinterpret_cast<std::uint64_t>(&probe);
  ctl->probeValue = probe;
  // Yama (ptrace_scope 1) lets only ancestors read our memory; peers are siblings. Open MPI's
  // shared-memory path does the same. It stays for the life of the process (other communicators
  // may rely on it); KUMI_SHM_CMA=0 leaves the setting alone.
  if (opt.crossMemoryAttach) ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  store.set(cat("shm/", me), cat("ok ", name, ' ', own.owner().token));

  std::vector<std::string> keys;
  for (int p : opt.localPeers) keys.push_back(cat("shm/", p));
  waitForKeys(store, keys, "shared-memory set-up", deadline, cancel);
  std::string attached;
  for (int i = 0; i < n; ++i) {
    Link& l = links[static_cast<std::size_t>(i)];
    l.rank = opt.localPeers[static_cast<std::size_t>(i)];
    l.in = channelAt(own.data(), i);
    l.inData = slotData(l.in, 0);
    std::string value = store.get(cat("shm/", l.rank), Store::Timeout(deadline.msLeft()));
    if (value.rfind("error ", 0) == 0) fail(kumiRemoteError, value.substr(6));
    try {
      attach(l, value);
      attached += cat(attached.empty() ? "" : ",", l.rank);
    } catch (const Error& e) {
      KUMI_WARN("rank ", me, ": no shared memory with rank ", l.rank, " (", e.what(),
                "); it is reached over the network instead. Is KUMI_HOSTID right?");
    }
  }
  store.set(cat("shmok/", me), attached.empty() ? "-" : attached);
  keys.clear();
  for (int p : opt.localPeers) keys.push_back(cat("shmok/", p));
  waitForKeys(store, keys, "shared-memory set-up", deadline, cancel);
  for (Link& l : links) {
    if (!l.segment.data()) continue;
    std::string theirs = store.get(cat("shmok/", l.rank), Store::Timeout(deadline.msLeft()));
    bool mutual = false;
    for (const std::string& r : splitList(theirs, ','))
      mutual = mutual || r == std::to_string(me);
    if (!mutual) {
      KUMI_WARN("rank ", me, ": rank ", l.rank, " could not map this rank's shared memory; using the network with it");
      continue;
    }
    l.usable = true;
    byRank[l.rank] = &l;
    connected.push_back(l.rank);
    if (l.in->crossMemory.load()) crossMemory.push_back(l.rank);
  }
  // Every peer that will ever map our segment has done so: the name can go, and a crash from
  // now on leaves nothing in the directory.
  own.unlink();
  KUMI_INFO("rank ", me, ": shared memory with ", connected.size(), " of ", n, " local peers (", crossMemory.size(),
            " by cross-memory attach), ", kSlots, " slots of ", slotBytes, " bytes per direction");
}

void ShmTransport::Impl::attach(Link& l, const std::string& value) {
  auto parts = splitList(value, ' ');
  if (parts.size() != 3 || parts[0] != "ok") fail(kumiInternalError, "malformed shared-memory notice '", value, "'");
  // Everything is checked on a local copy and kept only when all checks pass, so a half-made
  // link can never be used.
  Segment seg = Segment::attach(opt.dir, parts[1]);
  const SegmentOwner& o = seg.owner();
  // Same name, different segment: a peer on another host (KUMI_HOSTID forced equal) that
  // happens to use the same job name, or a stale file.
  if (std::to_string(o.token) != parts[2])
    fail(kumiSystemError, seg.path(), " is not the segment rank ", l.rank, " created (another host?)");
  if (o.pidNsHash != currentOwner().pidNsHash) fail(kumiSystemError, "rank ", l.rank, " runs in another PID namespace");
  const std::size_t mine = checkPeerLayout(seg.data(), seg.size(), slotBytes, static_cast<int>(opt.localPeers.size()),
                                           opt.rank, l.rank, seg.path());
  auto* peer = reinterpret_cast<Control*>(seg.data() + kControlOffset);
  Channel* out = channelAt(seg.data(), static_cast<int>(mine));
  l.segment = std::move(seg);
  l.pid = static_cast<pid_t>(l.segment.owner().pid);
  l.peer = peer;
  l.out = out;
  l.outData = slotData(l.out, 0);
  l.pidfd = Fd(static_cast<int>(::syscall(SYS_pidfd_open, l.pid, 0)));
  if (opt.crossMemoryAttach) {
    std::uint64_t seen = 0;
    iovec local{&seen, sizeof seen};
    iovec remote{reinterpret_cast<void*>(l.peer->probeAddress), sizeof seen};
    if (::process_vm_readv(l.pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(sizeof seen) &&
        seen == l.peer->probeValue)
      l.in->crossMemory.store(1);
    else
      KUMI_INFO("rank ", opt.rank, ": cross-memory attach to rank ", l.rank, " not allowed (", std::strerror(errno),
                "); large messages are copied through shared memory");
  }
}

void ShmTransport::connect(const std::vector<int>& peers, const Deadline&) {
  for (int p : peers) impl_->link(p, "connect");
}

void ShmTransport::setCallStamp(const CallStamp& stamp) { impl_->stamp = stamp; }

void ShmTransport::postSend(int peer, const void* data, std::size_t bytes, Request* req) {
  req->partsLeft = 1;
  impl_->link(peer, "send").sends.push_back({req, static_cast<const std::byte*>(data), bytes, impl_->stamp});
}

void ShmTransport::postRecv(int peer, void* data, std::size_t bytes, Request* req) {
  req->partsLeft = 1;
  req->device = nullptr;
  impl_->link(peer, "receive").recvs.push_back({req, static_cast<std::byte*>(data), bytes, impl_->stamp});
}

bool ShmTransport::pullsDevice(int peer) const {
  auto it = impl_->byRank.find(peer);
  if (it == impl_->byRank.end() || impl_->opt.checks.checksum || impl_->gpu.empty()) return false;
  const Control* c = it->second->peer;
  if (c->devicePull.load(std::memory_order_acquire) == 0) return false;
  // Only to a peer that can read our GPU's memory (same GPU, or peer access to it).
  const std::uint32_t n = std::min<std::uint32_t>(c->readableCount, kMaxReadableGpus);
  for (std::uint32_t i = 0; i < n; ++i)
    if (impl_->gpu == std::string(c->readable[i], strnlen(c->readable[i], kBusIdBytes))) return true;
  return false;
}

void ShmTransport::postSendDevice(int peer, const DeviceMessage& m, std::size_t bytes, Request* req) {
  Link& l = impl_->link(peer, "device send");
  req->partsLeft = 1;
  l.sends.push_back({req, nullptr, bytes, impl_->stamp, 0, true, m});
}

void ShmTransport::postRecvAny(int peer, void* data, std::size_t bytes, Request* req) {
  req->partsLeft = 1;
  req->device = nullptr;
  impl_->link(peer, "receive").recvs.push_back({req, static_cast<std::byte*>(data), bytes, impl_->stamp, 0, true});
}

void ShmTransport::releaseDevice(int peer) {
  Link& l = impl_->link(peer, "device release");
  if (!l.holding) fail(kumiInternalError, "shm: no device message of rank ", peer, " is being read");
  impl_->checkStillThere(l, "device memory");
  l.holding = false;
  l.recvTail += 1;
  l.in->tail.store(l.recvTail, std::memory_order_release);
  notify(l.peer);
}

void ShmTransport::enableDevicePull(DevicePuller puller, const std::vector<std::string>& readableGpus) {
  if (readableGpus.empty() || readableGpus.front().empty()) return;  // no GPU to name
  impl_->puller = std::move(puller);
  impl_->gpu = readableGpus.front();
  Control* c = impl_->ctl;
  c->readableCount = 0;
  for (const std::string& id : readableGpus) {
    if (c->readableCount == kMaxReadableGpus || id.empty() || id.size() >= kBusIdBytes) continue;
    std::memset(c->readable[c->readableCount], 0, kBusIdBytes);
    std::memcpy(c->readable[c->readableCount], id.data(), id.size());
    ++c->readableCount;
  }
  c->devicePull.store(1, std::memory_order_release);  // publishes the list above
}

// Moves what can move on one link; true if anything did.
bool ShmTransport::Impl::pump(Link& l, std::vector<Request*>& completed) {
  bool moved = false, wrote = false, read = false;
  // Sends: descriptors for large messages the peer can read directly, slot copies otherwise.
  while (!l.sends.empty()) {
    SendOp& op = l.sends.front();
    const std::uint64_t head = l.head;
    if (head - l.cachedTail >= kSlots) {
      l.cachedTail = l.out->tail.load(std::memory_order_acquire);
      if (head - l.cachedTail >= kSlots) break;
    }
    Slot& s = l.out->slots[head % kSlots];
    s.messageBytes = op.bytes;
    s.stamp = op.stamp;
    const bool sum = opt.checks.checksum;
    // A message that fits the ring is copied in now and the sender moves on; a larger one would
    // keep the sender waiting for the receiver to drain the ring anyway, so it goes as a
    // descriptor and costs one copy instead of two. (Reading by descriptor from the first slot
    // size on made every 64K..512K message wait for its receiver: on a host whose ranks outnumber
    // its cores that halved a 4-rank ring allreduce's speed at 256K..2M, docs/PERFORMANCE.md.)
    if (op.isDevice) {
      // The peer reads the sender's device memory in place; the whole name travels in the slot's data.
      s.kind = kDevice;
      s.checksum = 0;
      s.address = 0;
      s.offset = 0;
      s.bytes = op.bytes;
      std::memcpy(slotData(l.out, head), &op.device, sizeof(DeviceMessage));
      s.seq.store(head + 1, std::memory_order_release);
      l.head = head + 1;
      l.awaitingRead.emplace_back(head, op.req);
      l.sends.pop_front();
    } else if (op.bytes > kSlots * slotBytes && l.out->crossMemory.load(std::memory_order_relaxed)) {
      s.kind = kDescriptor | (sum ? kHasChecksum : 0);
      s.checksum = sum ? crc32c(op.data, op.bytes) : 0;
      s.address = reinterpret_cast<std::uint64_t>(op.data);
      s.offset = 0;
      s.bytes = op.bytes;
      s.seq.store(head + 1, std::memory_order_release);
      l.head = head + 1;
      l.awaitingRead.emplace_back(head, op.req);
      l.sends.pop_front();
    } else {
      const std::size_t n = std::min(slotBytes, op.bytes - op.offset);
      s.kind = kInline | (sum ? kHasChecksum : 0);
      s.offset = op.offset;
      s.bytes = n;
      if (n) std::memcpy(slotData(l.out, head), op.data + op.offset, n);
      s.checksum = sum ? crc32c(slotData(l.out, head), n) : 0;
      op.offset += n;
      s.seq.store(head + 1, std::memory_order_release);
      l.head = head + 1;
      if (op.offset == op.bytes) {
        done(op.req, completed);
        l.sends.pop_front();
      }
    }
    moved = wrote = true;
  }
  // A descriptor's send is done once the peer has read it (moved the tail past its slot).
  if (!l.awaitingRead.empty()) l.cachedTail = l.out->tail.load(std::memory_order_acquire);
  while (!l.awaitingRead.empty() && l.cachedTail > l.awaitingRead.front().first) {
    done(l.awaitingRead.front().second, completed);
    l.awaitingRead.pop_front();
    moved = true;
  }
  // Receives, in order; none while a device message is being read (its slot holds the tail).
  while (!l.recvs.empty() && !l.holding) {
    const std::uint64_t tail = l.recvTail;
    const Slot& s = l.in->slots[tail % kSlots];
    if (s.seq.load(std::memory_order_acquire) != tail + 1) break;
    RecvOp& op = l.recvs.front();
    if (s.stamp != op.expect) throw CallMismatch(l.rank, op.expect, s.stamp);
    if (s.messageBytes != op.bytes)
      fail(kumiRemoteError, "rank ", l.rank, " sent a message of ", s.messageBytes, " bytes where this rank expected ",
           op.bytes, " (the ranks called different collectives or counts?)");
    const std::uint32_t kind = s.kind & kKindMask;
    if (kind == kDevice) {
      if (s.bytes != op.bytes) fail(kumiRemoteError, "rank ", l.rank, " sent a malformed device-memory descriptor");
      std::memcpy(&l.deviceIn, slotData(l.in, tail), sizeof(DeviceMessage));
      if (op.acceptsDevice) {
        // The caller reads it from the sender's memory and releases the slot then.
        op.req->device = &l.deviceIn;
        l.holding = true;
        done(op.req, completed);
        l.recvs.pop_front();
        moved = true;
        break;
      }
      if (!puller)
        fail(kumiInternalError, "rank ", l.rank, " sent device memory to rank ", opt.rank, ", which cannot read it");
      puller(op.data, l.deviceIn, op.bytes);
      checkStillThere(l, "device memory");
      op.offset = op.bytes;
    } else if (kind == kDescriptor) {
      if (s.bytes != op.bytes) fail(kumiRemoteError, "rank ", l.rank, " sent a malformed shared-memory descriptor");
      std::size_t done = 0;
      while (done < op.bytes) {
        iovec local{op.data + done, op.bytes - done};
        iovec remote{reinterpret_cast<void*>(s.address + done), op.bytes - done};
        ssize_t got = ::process_vm_readv(l.pid, &local, 1, &remote, 1, 0);
        if (got <= 0)
          lost(l, "reading rank ", l.rank, "'s buffer (pid ", l.pid, ") failed: ",
               got == 0 ? "nothing read" : std::strerror(errno), errno == ESRCH ? " (it exited)" : "");
        done += static_cast<std::size_t>(got);
      }
      checkStillThere(l, "data");
      verify(l, s, op.data, op.bytes, "message read by cross-memory attach");
      op.offset = op.bytes;
    } else {
      if (kind != kInline || !inlineFragmentFits(s.offset, s.bytes, slotBytes, op.offset, op.bytes))
        fail(kumiRemoteError, "malformed shared-memory fragment from rank ", l.rank);
      if (s.bytes) std::memcpy(op.data + op.offset, slotData(l.in, tail), s.bytes);
      verify(l, s, op.data + op.offset, s.bytes, "fragment copied through the ring");
      op.offset += s.bytes;
    }
    l.recvTail = tail + 1;
    l.in->tail.store(tail + 1, std::memory_order_release);
    if (op.offset == op.bytes) {
      done(op.req, completed);
      l.recvs.pop_front();
    }
    moved = read = true;
  }
  // One wake-up per batch: the peer waits for data (we wrote) or for room and reads (we read).
  if (wrote || read) notify(l.peer);
  if (!moved && l.pending() && l.peer->closed.load(std::memory_order_acquire)) {
    const bool dataLeft = !l.recvs.empty() && l.in->slots[l.recvTail % kSlots].seq.load() == l.recvTail + 1;
    if (!dataLeft)
      lost(l, "rank ", l.rank, " closed its shared-memory connection (it failed, aborted or left)");
  }
  return moved;
}

bool ShmTransport::progress(std::vector<Request*>& completed) {
  Impl& m = *impl_;
  if (!m.deadPeer.empty()) {
    auto it = m.byRank.find(m.deadPeerRank);
    if (it != m.byRank.end()) m.lost(*it->second, m.deadPeer);
    failPeerLost(m.deadPeerRank, m.deadPeer);
  }
  bool moved = false;
  for (Link& l : m.links)
    if (l.usable && l.pending()) moved = m.pump(l, completed) || moved;
  return moved;
}

bool ShmTransport::Impl::canMove(const Link& l) const {
  if (!l.usable || !l.pending()) return false;
  if (l.peer->closed.load()) return true;
  if (!l.recvs.empty() && l.in->slots[l.recvTail % kSlots].seq.load() == l.recvTail + 1) return true;
  if (!l.sends.empty() && l.head - l.out->tail.load() < kSlots) return true;
  return !l.awaitingRead.empty() && l.out->tail.load() > l.awaitingRead.front().first;
}

namespace {
// Whether the peer's process has ended (a pidfd is readable then, zombie or not).
bool exited(const Link& l) {
  if (l.pidfd.valid()) {
    pollfd p{l.pidfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  return ::kill(l.pid, 0) != 0 && errno == ESRCH;
}
}  // namespace

void ShmTransport::Impl::checkLiveness() {
  for (const Link& l : links) {
    // A peer that finished and left may have put what we wait for in our ring first.
    if (!l.usable || !l.pending() || canMove(l)) continue;
    if (exited(l)) {
      deadPeer = cat("rank ", l.rank, " (pid ", l.pid, ", this host) exited or was killed while this rank waited for it");
      deadPeerRank = l.rank;
      return;
    }
  }
}

void ShmTransport::waitForEvents(int timeoutMs) {
  Impl& m = *impl_;
  if (m.isShutdown || m.interrupted.load()) return;
  const auto now = std::chrono::steady_clock::now();
  if (timeoutMs > 0 && now - m.lastLivenessCheck >= kLivenessPeriod) {
    m.lastLivenessCheck = now;
    m.checkLiveness();
    if (!m.deadPeer.empty()) return;
  }
  if (timeoutMs <= 0) return;
  // Event count: read the doorbell, announce sleep, fence, re-check. A notifier publishes,
  // fences, then looks at `sleeping`: either we see its data in the re-check, or it sees us
  // asleep and bumps the doorbell, which makes the futex wait return at once.
  const std::uint32_t seen = m.ctl->doorbell.load(std::memory_order_seq_cst);
  m.ctl->sleeping.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool ready = m.interrupted.load();
  for (const Link& l : m.links) ready = ready || m.canMove(l);
  if (!ready) {
    const long ms = std::min<long>(timeoutMs, kLivenessPeriod.count());
    timespec ts{ms / 1000, (ms % 1000) * 1000000};
    futex(&m.ctl->doorbell, FUTEX_WAIT, seen, &ts);
  }
  m.ctl->sleeping.store(0, std::memory_order_relaxed);
}

void ShmTransport::interrupt() {
  impl_->interrupted.store(true);
  if (impl_->ctl) wake(impl_->ctl);
}

void ShmTransport::publishFailure(const std::string& story) {
  Impl& m = *impl_;
  if (m.isShutdown || !m.ctl || m.ctl->storyBytes.load() != 0) return;
  const std::size_t n = std::min(story.size(), kStoryBytes);
  std::memcpy(m.ctl->story, story.data(), n);
  m.ctl->storyBytes.store(static_cast<std::uint32_t>(n), std::memory_order_release);
}

void ShmTransport::shutdown() {
  Impl& m = *impl_;
  if (m.isShutdown) return;
  m.isShutdown = true;
  if (!m.ctl) return;
  m.ctl->closed.store(1, std::memory_order_seq_cst);
  for (Link& l : m.links)
    if (l.peer) wake(l.peer);
}

void ShmTransport::cancelAll() {
  for (Link& l : impl_->links) {
    l.sends.clear();
    l.recvs.clear();
    l.awaitingRead.clear();
    l.holding = false;
  }
}

}  // namespace kumi
