// The cache of peers' device allocations (gpu/ipc_cache.hpp) on the CPU imitation of a GPU,
// whose IPC maps another process's memory as CUDA's does (here this process's own, through
// /proc/self/fd, which the imitation allows and CUDA would not).
#include <gtest/gtest.h>

#include <cstring>
#include <unistd.h>

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

}  // namespace
}  // namespace kumi::gpu
