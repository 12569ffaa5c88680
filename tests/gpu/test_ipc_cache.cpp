// The cache of peers' device allocations (gpu/ipc_cache.hpp) on the CPU imitation of a GPU,
// whose IPC maps another process's memory as CUDA's does (here this process's own, through
// /proc/self/fd, which the imitation allows and CUDA would not), and the IPC events that order a
// named message's reader after its writer, queue to queue.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "../common/fake_device.hpp"
#include "core/error.hpp"
#include "gpu/ipc_cache.hpp"

namespace kumi::gpu {
namespace {

using kumi::test::FakeDevice;

TEST(IpcCache, OpensEachAllocationOnceAndReadsThroughTheMapping) {
  FakeDevice dev;
  Memory buf = dev.deviceMemory(0, 4096);
  const char text[] = "bytes of another process";
  dev.copyNow(buf.get() + 100, text, sizeof text);
  const auto ref = dev.exportIpc(buf.get() + 100);
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->offset, 100u);
  IpcCache cache(dev);
  std::byte* mapped = cache.map(::getpid(), ref->bufferId, ref->handle, ref->offset);
  EXPECT_EQ(dev.kindOf(mapped), MemoryKind::Device);  // still device memory to the host
  char got[sizeof text] = {};
  dev.copyNow(got, mapped, sizeof text);
  EXPECT_STREQ(got, text);
  // Another offset of the same allocation: no second open.
  EXPECT_EQ(cache.map(::getpid(), ref->bufferId, ref->handle, 0) + 100, mapped);
  EXPECT_EQ(cache.opens(), 1u);
  EXPECT_EQ(dev.opened.load(), 1);
}

TEST(IpcCache, ANewAllocationIsANewEntryAndTheOldestGoesBeyondCapacity) {
  FakeDevice dev;
  IpcCache cache(dev, 2);
  std::vector<Memory> bufs;
  std::vector<IpcRef> refs;
  for (int k = 0; k < 3; ++k) {
    bufs.push_back(dev.deviceMemory(0, 256));
    refs.push_back(*dev.exportIpc(bufs.back().get()));
  }
  // Buffer ids are never reused, even where an address is.
  EXPECT_NE(refs[0].bufferId, refs[1].bufferId);
  cache.map(1, refs[0].bufferId, refs[0].handle, 0);
  cache.map(1, refs[1].bufferId, refs[1].handle, 0);
  cache.map(1, refs[0].bufferId, refs[0].handle, 0);  // 0 is now the most recent
  cache.map(1, refs[2].bufferId, refs[2].handle, 0);  // evicts 1, closing its mapping
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(dev.closed.load(), 1);
  cache.map(1, refs[0].bufferId, refs[0].handle, 0);
  EXPECT_EQ(cache.opens(), 3u);  // 0 stayed
  cache.map(1, refs[1].bufferId, refs[1].handle, 0);
  EXPECT_EQ(cache.opens(), 4u);  // 1 had gone
  // The same buffer id of another process is another allocation.
  cache.map(2, refs[1].bufferId, refs[1].handle, 0);
  EXPECT_EQ(cache.opens(), 5u);
}

TEST(IpcCache, AHandleThatCannotBeOpenedThrowsAndChangesNothing) {
  FakeDevice dev;
  IpcCache cache(dev);
  std::array<std::byte, 64> bogus{};
  const char name[] = "/nonexistent/kumi:64";
  std::memcpy(bogus.data(), name, sizeof name);
  EXPECT_THROW(cache.map(1, 7, bogus, 0), Error);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(IpcCache, OnlyDeviceMemoryIsExported) {
  FakeDevice dev;
  Memory pinned = dev.hostMemory(64);
  EXPECT_FALSE(dev.exportIpc(pinned.get()));
  dev.ipc = false;  // as for memory CUDA cannot share (stream-ordered pools)
  Memory buf = dev.deviceMemory(0, 64);
  EXPECT_FALSE(dev.exportIpc(buf.get()));
}

TEST(IpcCache, OpensEachPeerEventOnceKeyedByProcessAndId) {
  FakeDevice dev;
  auto a = dev.newIpcEvent(0), b = dev.newIpcEvent(0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->id(), b->id());
  IpcCache cache(dev);
  IpcEvent& first = cache.event(::getpid(), a->id(), a->handle());
  EXPECT_EQ(&cache.event(::getpid(), a->id(), a->handle()), &first);
  cache.event(::getpid(), b->id(), b->handle());
  cache.event(::getpid() + 1, a->id(), a->handle());  // another process's event of the same id
  EXPECT_EQ(cache.events(), 3u);
  EXPECT_EQ(dev.eventsOpened.load(), 3);
  std::array<std::byte, 64> bogus{};
  const char name[] = "/nonexistent/7:event";
  std::memcpy(bogus.data(), name, sizeof name);
  EXPECT_THROW(cache.event(1, 9, bogus), Error);
  EXPECT_EQ(cache.events(), 3u);
}

// The reader's queue waits, with no host in between, for the writer's copy that was queued
// before the record: what it then reads is what was written, however late the writer runs.
TEST(IpcCache, AQueueWaitingOnAnOpenedEventReadsWhatTheWriterWrote) {
  FakeDevice dev;
  dev.maxDelayUs = 2000;  // the writer's stream runs well after the reader's could
  constexpr std::size_t count = 1 << 16;
  std::vector<std::uint32_t> host(count);
  Memory src = dev.deviceMemory(0, count * 4), slot = dev.deviceMemory(0, count * 4), dst = dev.deviceMemory(0, count * 4);
  auto writer = dev.newQueue(0), reader = dev.newQueue(0);
  auto written = dev.newIpcEvent(0);
  IpcCache cache(dev);
  IpcEvent& seen = cache.event(::getpid(), written->id(), written->handle());
  for (std::uint32_t round = 1; round <= 20; ++round) {
    for (std::size_t i = 0; i < count; ++i) host[i] = round * 1000003u + static_cast<std::uint32_t>(i);
    dev.copyNow(src.get(), host.data(), count * 4);
    writer->copy(slot.get(), src.get(), count * 4);
    writer->record(*written);
    reader->waitFor(seen);
    const auto t = reader->copy(dst.get(), slot.get(), count * 4);
    while (reader->finished() < t) std::this_thread::yield();
    std::vector<std::uint32_t> got(count);
    dev.copyNow(got.data(), dst.get(), count * 4);
    ASSERT_EQ(got, host) << "round " << round << ": the reader ran before the writer's copy";
    writer->drain();  // the slot is written again only after its reader is done
  }
  EXPECT_EQ(dev.eventRecords.load(), 20);
  EXPECT_EQ(dev.eventWaits.load(), 20);
}

TEST(IpcCache, AHostReaderSynchronizesOnThePeersEvent) {
  FakeDevice dev;
  dev.maxDelayUs = 5000;
  auto writer = dev.newQueue(0);
  auto written = dev.newIpcEvent(0);
  Memory slot = dev.deviceMemory(0, 64);
  const std::uint64_t value = 0x1234567890abcdefull;
  std::uint64_t staged = value, got = 0;
  Memory pinned = dev.hostMemory(8);
  std::memcpy(pinned.get(), &staged, 8);
  writer->copy(slot.get(), pinned.get(), 8);
  writer->record(*written);
  IpcCache cache(dev);
  cache.event(::getpid(), written->id(), written->handle()).synchronize();
  dev.copyNow(&got, slot.get(), 8);
  EXPECT_EQ(got, value);
}

// A writer that died before its record ran: the waiting queue fails (its finished() throws)
// instead of hanging, and a host reader is told.
TEST(IpcCache, AWaitOnAnEventOfAProcessThatHasGoneFailsRatherThanHangs) {
  FakeDevice dev;
  int toParent[2], toChild[2];
  ASSERT_EQ(::pipe(toParent), 0);
  ASSERT_EQ(::pipe(toChild), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A record made (numbered) whose stream never reaches it: the process ends first.
    auto ev = dev.newIpcEvent(0);
    static_cast<FakeDevice::Event&>(*ev).counters_->recorded.store(1);
    const auto h = ev->handle();
    if (::write(toParent[1], h.data(), h.size()) != static_cast<ssize_t>(h.size())) ::_exit(2);
    char go = 0;
    if (::read(toChild[0], &go, 1) != 1) ::_exit(3);
    ::_exit(0);
  }
  std::array<std::byte, 64> h{};
  ASSERT_EQ(::read(toParent[0], h.data(), h.size()), static_cast<ssize_t>(h.size()));
  IpcCache cache(dev);
  IpcEvent& ev = cache.event(child, 1, h);
  Memory a = dev.deviceMemory(0, 8), b = dev.deviceMemory(0, 8);
  auto reader = dev.newQueue(0);
  reader->waitFor(ev);
  reader->copy(a.get(), b.get(), 8);
  ASSERT_EQ(::write(toChild[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_THROW(ev.synchronize(), Error);
  reader->drain();
  EXPECT_THROW(reader->finished(), Error);
  for (int fd : {toParent[0], toParent[1], toChild[0], toChild[1]}) ::close(fd);
}

TEST(IpcCache, ADeviceWithoutIpcEventsSaysSoWithNoEvent) {
  FakeDevice dev;
  dev.ipcEvents = false;
  EXPECT_EQ(dev.newIpcEvent(0), nullptr);
}

}  // namespace
}  // namespace kumi::gpu
