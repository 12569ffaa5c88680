#include "collectives/device_executor.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/log.hpp"

namespace kumi {
namespace {
// Bounce buffers: 2..8 per channel of the call's largest message, within 32 MiB of pinned
// memory in all (pinned memory is scarce and slow to allocate: the arena is kept across calls).
constexpr std::size_t kMaxSlotsPerChannel = 8;
constexpr std::size_t kBounceBudgetBytes = 32u << 20;
// A device arena the NIC registers is whole 2 MiB pages: a registration covers whole pages, and
// a dma-buf export wants the range to be the allocation's own (cudaMalloc gives allocations of
// 2 MiB and more 2 MiB alignment).
constexpr std::size_t kNicArenaGranularity = 2u << 20;

// Step states.
constexpr char kWaiting = 0;  // for its dependencies
constexpr char kReady = 1;    // dependencies issued; its own work not yet
constexpr char kIssued = 2;   // its device work is on the queue: dependents may be issued

// How a transfer leaves or arrives other than through a bounce buffer.
constexpr char kByName = 1;  // device memory named to a peer of this host (CUDA IPC)
constexpr char kByNic = 2;   // a send the NIC reads from a registered device slot (GPUDirect RDMA)
}  // namespace

DeviceExecutor::~DeviceExecutor() { dropNicRegistration(); }

void DeviceExecutor::dropNicRegistration() {
  if (nicHandle_ != 0 && nicTransport_ != nullptr) nicTransport_->deregisterBuffer(nicHandle_);
  nicHandle_ = 0;
  nicAsked_ = false;
}

void DeviceExecutor::registerWithNic(Transport* tp, std::size_t bytes) {
  nicAsked_ = true;
  nicTransport_ = tp;
  try {
    nicHandle_ = tp->registerDeviceBuffer(deviceArena_.get(), bytes, device_, deviceIndex_);
    if (nicHandle_ == 0) nicRefused_ = true;  // the transport stages: never ask again
    if (nicHandle_ != 0) {
      const gpu::NicAccess a = device_.nicAccess(deviceIndex_);
      nicWrites_ = a.seesNicWrites;
      if (!nicWrites_) KUMI_INFO("GPUDirect RDMA for sends only: ", a.noNicWrites);
    }
  } catch (const Error& e) {
    // This arena could not be registered; bounce buffers still work, and a larger arena is tried anew.
    if (!nicWarned_) KUMI_WARN("GPUDirect RDMA not used for now: ", e.what(), "; device bytes between hosts are staged");
    nicWarned_ = true;
    nicHandle_ = 0;
  }
}

gpu::IpcEvent* DeviceExecutor::slotEvent(int slot) {
  const auto at = static_cast<std::size_t>(slot);
  if (at < slotEvents_.size() && slotEvents_[at]) return slotEvents_[at].get();
  if (eventsOff_) return nullptr;
  if (slotEvents_.size() <= at) slotEvents_.resize(at + 1);
  try {
    slotEvents_[at] = device_.newIpcEvent(deviceIndex_);
    if (!slotEvents_[at]) KUMI_INFO("the device offers no IPC events: messages by name wait for the host to see their copy");
  } catch (const Error& e) {
    KUMI_WARN("no more CUDA IPC events: ", e.what(), "; further device slots' messages wait for the host");
  }
  // Slots that have an event keep it (a peer may be waiting on it); the others do without.
  if (!slotEvents_[at]) eventsOff_ = true;
  return slotEvents_[at].get();
}

const std::byte* namedBytes(const DeviceMessage& m, gpu::IpcCache& cache) {
  static const int self = static_cast<int>(::getpid());
  if (m.pid == self) return reinterpret_cast<const std::byte*>(m.address);  // a rank of this process
  return cache.map(m.pid, m.bufferId, m.handle, m.offset);
}

gpu::IpcEvent& writtenEvent(const DeviceMessage& m, gpu::IpcCache& cache) {
  static const int self = static_cast<int>(::getpid());
  if (m.pid == self) return *reinterpret_cast<gpu::IpcEvent*>(m.eventAddress);  // a rank of this process
  return cache.event(m.pid, m.eventId, m.event);
}

std::byte* DeviceExecutor::scratch(std::size_t bytes) {
  if (scratchBytes_ < bytes) {
    scratch_ = device_.deviceMemory(deviceIndex_, bytes);
    scratchBytes_ = bytes;
  }
  return scratch_.get();
}

void DeviceExecutor::run(const PreparedSchedule& ps, const Buffers& bufs, Transport* tp, const ExecParams& p,
                         gpu::WorkQueue& q) {
  const auto& steps = ps.schedule.steps;
  const std::size_t n = steps.size();
  if (n == 0) return;
  if (tp == nullptr && !ps.channelSteps.empty()) fail(kumiInternalError, "schedule needs peers but there is no transport");
  const std::size_t channels = ps.channelSteps.size();

  std::size_t largest = 0;
  for (const Step& st : steps) {
    if (st.kind == StepKind::Send) largest = std::max(largest, bufs.bytes(st.src));
    if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) largest = std::max(largest, bufs.bytes(st.dst));
  }
  if (freeSlots_.size() < channels) freeSlots_.resize(channels);
  for (auto& pool : freeSlots_) pool.clear();
  largest = std::max<std::size_t>(largest, 1);  // zero-byte messages (a barrier's) need a slot too
  if (channels > 0) {
    const std::size_t per = std::clamp<std::size_t>(kBounceBudgetBytes / (largest * channels), 2, kMaxSlotsPerChannel);
    const std::size_t need = per * channels * largest;
    if (need > pinnedBytes_) {
      pinned_.reset();  // the old arena first: pinned memory may be short
      pinnedBytes_ = 0;
      pinned_ = device_.hostMemory(need);
      pinnedBytes_ = need;
    }
    slotBytes_ = largest;
    int next = 0;
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t k = 0; k < per; ++k) freeSlots_[c].push_back(next++);
    // Sends by name leave from device slots of the same shape, exported once per arena.
    if (deviceFree_.size() < channels) deviceFree_.resize(channels);
    for (auto& pool : deviceFree_) pool.clear();
    // The arena serves sends by name and sends by the NIC; a transport that stages never gets
    // asked again (nor an arena made for it alone).
    if (recvDeviceFree_.size() < channels) recvDeviceFree_.resize(channels);
    for (auto& pool : recvDeviceFree_) pool.clear();
    const bool forNic = tp != nullptr && !nicRefused_;
    if (ipc_ != nullptr || forNic) {
      // Device slots of sends; for the NIC, as many again for receives it writes into.
      const std::size_t arenaNeed =
          forNic ? (2 * need + kNicArenaGranularity - 1) / kNicArenaGranularity * kNicArenaGranularity : need;
      if (arenaNeed > deviceArenaBytes_) {
        dropNicRegistration();  // before the memory it pins goes
        deviceArena_.reset();
        deviceArenaBytes_ = 0;
        deviceArena_ = device_.deviceMemory(deviceIndex_, arenaNeed);
        deviceArenaBytes_ = arenaNeed;
        arenaName_ = ipc_ != nullptr ? device_.exportIpc(deviceArena_.get()) : std::nullopt;
      }
      if (forNic && !nicAsked_) registerWithNic(tp, deviceArenaBytes_);
      if (ipc_ == nullptr && nicRefused_) {  // made for the NIC alone, which stages
        deviceArena_.reset();
        deviceArenaBytes_ = 0;
      }
      if (arenaName_ || nicHandle_ != 0) {
        next = 0;
        for (std::size_t c = 0; c < channels; ++c)
          for (std::size_t k = 0; k < per; ++k) deviceFree_[c].push_back(next++);
      }
      if (nicHandle_ != 0 && nicWrites_ && deviceArenaBytes_ >= 2 * need)
        for (std::size_t c = 0; c < channels; ++c)
          for (std::size_t k = 0; k < per; ++k) recvDeviceFree_[c].push_back(next++);
    }
  }

  remaining_.assign(ps.depCount.begin(), ps.depCount.end());
  state_.assign(n, kWaiting);
  received_.assign(n, 0);
  over_.assign(n, 0);
  head_.assign(channels, 0);
  unposted_.assign(channels, 0);
  requests_.assign(n, Request{});
  slotOf_.assign(n, -1);
  recvDeviceSlotOf_.assign(n, -1);
  direct_.assign(n, 0);
  names_.resize(n);
  static const int self = static_cast<int>(::getpid());
  fifo_.clear();
  fifoHead_ = 0;
  std::size_t over = 0;  // steps with nothing left to do
  gpu::WorkQueue::Ticket last = 0, finished = 0;

  auto issue = [&](std::uint32_t i) {
    state_[i] = kIssued;
    for (std::uint32_t d = ps.dependentsBegin[i]; d < ps.dependentsBegin[i + 1]; ++d) {
      const std::uint32_t j = ps.dependents[d];
      if (--remaining_[j] == 0) work_.push_back(j);
    }
  };
  auto enqueued = [&](gpu::WorkQueue::Ticket t) {
    last = std::max(last, t);
    return t;
  };
  auto runLocal = [&](std::uint32_t i) {
    const Step& st = steps[i];
    // Nothing is queued for no bytes (a barrier's buffers may be null).
    if (st.kind == StepKind::Copy) {
      if (bufs.at(st.dst) != bufs.at(st.src) && bufs.bytes(st.dst) > 0)
        enqueued(q.copy(bufs.at(st.dst), bufs.at(st.src), bufs.bytes(st.dst)));
    } else if (st.kind == StepKind::Divide && st.dst.count > 0) {
      enqueued(q.divide(p.type, bufs.at(st.dst), static_cast<std::size_t>(st.dst.count),
                        static_cast<std::uint64_t>(p.worldSize)));
    }
    issue(i);
    over_[i] = 1;
    ++over;
  };
  // A send by name: the peer maps device memory (and the arena could be exported).
  auto byName = [&](std::uint32_t i) {
    const Step& st = steps[i];
    return arenaName_ && ipc_ != nullptr && bufs.bytes(st.src) > 0 && tp->pullsDevice(st.peer);
  };
  // A send the NIC reads from a device slot: the transport registered the arena and reads
  // device memory for this peer.
  auto byNic = [&](std::uint32_t i) {
    const Step& st = steps[i];
    return nicHandle_ != 0 && bufs.bytes(st.src) > 0 && tp->readsDevice(st.peer);
  };
  // Starts steps at the head of channel c, in order. A send once its dependencies were issued
  // and a bounce buffer (or, by name, a device slot) is free: the copy out is queued, the send
  // posted when it has finished. A receive as soon as a bounce buffer is free: it lands there
  // whatever its dependencies.
  auto pumpChannel = [&](std::size_t c) {
    const auto& list = ps.channelSteps[c];
    std::size_t& h = head_[c];
    while (h < list.size()) {
      const std::uint32_t i = list[h];
      const Step& st = steps[i];
      if (st.kind == StepKind::Send && state_[i] != kReady) break;
      const char via = st.kind != StepKind::Send ? 0 : byName(i) ? kByName : byNic(i) ? kByNic : 0;
      if (via != 0) {
        // Copied into a device slot (the peer, or the NIC, reads it there, so the source may be
        // written again at once: two ranks that send and then reduce into the buffer they sent
        // would otherwise each wait for the other's read), then posted once the copy has run.
        if (deviceFree_[c].empty()) break;
        const int d = deviceFree_[c].back();
        deviceFree_[c].pop_back();
        slotOf_[i] = d;
        direct_[i] = via;
        requests_[i].step = i;
        std::byte* at = deviceSlot(d);
        const gpu::WorkQueue::Ticket t = enqueued(q.copy(at, bufs.at(st.src), bufs.bytes(st.src)));
        gpu::IpcEvent* written = via == kByName ? slotEvent(d) : nullptr;
        if (via == kByName) {
          DeviceMessage& m = names_[i];
          m.handle = arenaName_->handle;
          m.bufferId = arenaName_->bufferId;
          m.offset = arenaName_->offset + static_cast<std::uint64_t>(at - deviceArena_.get());
          m.address = reinterpret_cast<std::uint64_t>(at);
          m.pid = self;
          m.eventId = 0;
          if (written != nullptr) {
            q.record(*written);
            m.event = written->handle();
            m.eventId = written->id();
            m.eventAddress = reinterpret_cast<std::uint64_t>(written);
          }
        }
        if (written != nullptr && unposted_[c] == 0) {
          // Named at once: the peer's queue waits for the event, not this host for the copy.
          tp->postSendDevice(st.peer, names_[i], bufs.bytes(st.src), &requests_[i]);
        } else {
          // Posted once the host has seen the copy finish, and after the channel's earlier
          // sends (the peer matches messages in order; an earlier one may have been staged
          // because the peer had not yet said it reads names).
          fifo_.push_back({t, i});
          ++unposted_[c];
        }
        issue(i);
        ++h;
        continue;
      }
      if (freeSlots_[c].empty()) break;
      const int s = freeSlots_[c].back();
      freeSlots_[c].pop_back();
      slotOf_[i] = s;
      requests_[i].step = i;
      if (st.kind == StepKind::Send && bufs.bytes(st.src) == 0) {
        if (unposted_[c] == 0) {
          tp->postSend(st.peer, slot(s), 0, &requests_[i]);  // nothing to copy out
        } else {
          fifo_.push_back({last, i});  // behind the channel's sends still waiting for their copy
          ++unposted_[c];
        }
        issue(i);
      } else if (st.kind == StepKind::Send) {
        fifo_.push_back({enqueued(q.copy(slot(s), bufs.at(st.src), bufs.bytes(st.src))), i});
        ++unposted_[c];
        issue(i);  // the queue reads the source before any later write to it
      } else if (nicHandle_ != 0 && bufs.bytes(st.dst) > 0 && tp->readsDevice(st.peer) && !recvDeviceFree_[c].empty()) {
        // The NIC may write the bytes into a device slot (the sender decides); else the bounce buffer.
        const int d = recvDeviceFree_[c].back();
        recvDeviceFree_[c].pop_back();
        recvDeviceSlotOf_[i] = d;
        tp->postRecvDevice(st.peer, slot(s), deviceSlot(d), bufs.bytes(st.dst), &requests_[i]);
      } else if (ipc_ != nullptr) {
        tp->postRecvAny(st.peer, slot(s), bufs.bytes(st.dst), &requests_[i]);  // bytes, or a name
      } else {
        tp->postRecv(st.peer, slot(s), bufs.bytes(st.dst), &requests_[i]);
      }
      ++h;
    }
  };
  // A receive in its bounce buffer whose dependencies were issued: copied or reduced in.
  auto release = [&](std::uint32_t i) {  // a send is out, or a receive's consumer finished
    over_[i] = 1;
    ++over;
    const auto c = static_cast<std::size_t>(ps.channelOf[i]);
    freeSlots_[c].push_back(slotOf_[i]);
    if (recvDeviceSlotOf_[i] >= 0) recvDeviceFree_[c].push_back(recvDeviceSlotOf_[i]);
    pumpChannel(c);
  };
  auto consume = [&](std::uint32_t i) {
    const Step& st = steps[i];
    if (bufs.bytes(st.dst) == 0) {  // nothing to copy or reduce in
      issue(i);
      release(i);
      return;
    }
    const std::byte* landed = slot(slotOf_[i]);
    if (requests_[i].landedOnDevice) {  // written there by the NIC: visible to the queue after a flush
      device_.flushNicWrites(deviceIndex_);
      landed = deviceSlot(recvDeviceSlotOf_[i]);
    }
    if (direct_[i]) {  // read in place from the sender's memory, once the sender's queue wrote it
      const DeviceMessage& m = names_[i];
      landed = namedBytes(m, *ipc_);
      if (m.eventId != 0) q.waitFor(writtenEvent(m, *ipc_));
    }
    const gpu::WorkQueue::Ticket t =
        st.kind == StepKind::Recv
            ? q.copy(bufs.at(st.dst), landed, bufs.bytes(st.dst))
            : q.reduce(p.type, p.op, bufs.at(st.dst), bufs.at(st.src), landed, static_cast<std::size_t>(st.dst.count));
    fifo_.push_back({enqueued(t), i});
    issue(i);
  };
  auto drainWork = [&] {
    while (!work_.empty()) {
      const std::uint32_t i = work_.back();
      work_.pop_back();
      state_[i] = kReady;
      const int c = ps.channelOf[i];
      if (c < 0) {
        runLocal(i);
      } else if (steps[i].kind == StepKind::Send) {
        pumpChannel(static_cast<std::size_t>(c));
      } else if (received_[i]) {
        consume(i);
      }
    }
  };
  work_.clear();
  for (std::uint32_t i = 0; i < n; ++i)
    if (remaining_[i] == 0) work_.push_back(i);
  std::reverse(work_.begin(), work_.end());  // schedule order, so channel heads come first
  for (std::size_t c = 0; c < channels; ++c) pumpChannel(c);
  drainWork();

  IdleWait idle(p);
  for (;;) {
    idle.checkAbort();
    bool moved = false;
    if (finished < last) {
      finished = q.finished();
      // In ticket order: a copy out has finished (post its send), or a receive's consumer has
      // (its bounce buffer is free again).
      while (fifoHead_ < fifo_.size() && fifo_[fifoHead_].ticket <= finished) {
        const std::uint32_t i = fifo_[fifoHead_++].step;
        moved = true;
        if (steps[i].kind == StepKind::Send) --unposted_[static_cast<std::size_t>(ps.channelOf[i])];
        if (steps[i].kind == StepKind::Send && direct_[i] == kByName) {
          tp->postSendDevice(steps[i].peer, names_[i], bufs.bytes(steps[i].src), &requests_[i]);
        } else if (steps[i].kind == StepKind::Send && direct_[i] == kByNic) {
          tp->postSend(steps[i].peer, deviceSlot(slotOf_[i]), bufs.bytes(steps[i].src), &requests_[i]);
        } else if (steps[i].kind == StepKind::Send) {
          tp->postSend(steps[i].peer, slot(slotOf_[i]), bufs.bytes(steps[i].src), &requests_[i]);
        } else {
          if (direct_[i]) tp->releaseDevice(steps[i].peer);  // the sender may write it again
          release(i);
        }
      }
      drainWork();
    }
    if (tp != nullptr) {
      completed_.clear();
      moved = tp->progress(completed_) || moved;
      for (Request* req : completed_) {
        const std::uint32_t i = req->step;
        if (steps[i].kind == StepKind::Send && direct_[i]) {
          over_[i] = 1;  // the peer (or the NIC) has read the device slot: it is free again
          ++over;
          const auto c = static_cast<std::size_t>(ps.channelOf[i]);
          deviceFree_[c].push_back(slotOf_[i]);
          pumpChannel(c);
        } else if (steps[i].kind == StepKind::Send) {
          release(i);
        } else {
          if (req->device != nullptr) {
            direct_[i] = kByName;
            names_[i] = *req->device;
          }
          received_[i] = 1;
          if (state_[i] == kReady) consume(i);
        }
        drainWork();
      }
      moved = moved || !completed_.empty();
    }
    if (over == n && finished >= last) break;
    if (moved) {
      idle.moved();
      continue;
    }
    // While the device works, look again soon rather than sleeping on the transport.
    idle.wait(tp, tp != nullptr && finished >= last, [&] {
      failStuck(ps, p, n - over, [&](std::uint32_t i) { return !over_[i]; });
    });
  }
}

}  // namespace kumi
