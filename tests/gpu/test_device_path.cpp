// Collectives on device buffers, on the CPU imitation of a GPU (tests/common/fake_device.hpp),
// one rank per process under kumirun (every rank runs every test, in order): a call returns before its stream reaches it, starts after
// the stream's earlier work, holds the stream's later work until it is over; ranks that mix host
// and device buffers in a collective are told (a send and its receive may differ); refused mixes
// say why; a failure after the call releases the stream and
// is the communicator's asynchronous error; host calls, abort and destroy keep their place.
// Every collective, type and op on device buffers is the multi-process suite's job
// (mp.collectives.fakedevice.*, and KUMI_TEST_DEVICE=cuda on a GPU).
#include <gtest/gtest.h>
#include <kumi/kumi.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "../common/fake_device.hpp"
#include "../common/reference_data.hpp"
#include "core/scoped_env.hpp"
#include "gpu/device.hpp"

namespace {

using kumi::test::FakeDevice;
using kumi::test::FakeStream;
using Clock = std::chrono::steady_clock;

std::shared_ptr<FakeDevice> fake;
kumiComm_t world = nullptr;
int worldSize = 0;

class DevicePath : public ::testing::Test {};

// Runs body(comm, rank) with a communicator of its own (split from the world, so that a test
// may fail or abort it), destroyed after.
template <class Body>
void withOwnComm(Body&& body) {
  int rank = 0;
  ASSERT_EQ(kumiCommRank(world, &rank), kumiSuccess);
  kumiComm_t comm = nullptr;
  ASSERT_EQ(kumiCommSplit(world, 0, rank, &comm), kumiSuccess) << kumiGetLastError();
  body(comm, rank);
  kumiCommDestroy(comm);
}

std::vector<float> inputs(int rank, std::size_t count) {
  std::vector<float> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>(kumi::test::inputValue(rank, i, kumiSum));
  return v;
}

std::size_t wrongSums(const std::vector<float>& got, int n) {
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != static_cast<float>(kumi::test::expectedReduction(kumiFloat32, kumiSum, n, i));
  return wrong;
}

TEST_F(DevicePath, ACallReturnsAtOnceAndFollowsItsStreamBothWays) {
  constexpr std::size_t count = 300001;  // several slices per ring step
  withOwnComm([&](kumiComm_t comm, int r) {
    auto stream = fake->newStream();
    FakeStream& s = FakeDevice::stream(stream.get());
    auto send = fake->deviceMemory(0, count * 4), recv = fake->deviceMemory(0, count * 4);
    // The stream's earlier work: held until the calls have returned, then it writes the input.
    std::promise<void> go;
    auto started = go.get_future().share();
    const auto host = inputs(r, count);
    s.enqueue([&, started] {
      started.wait();
      std::memcpy(FakeDevice::real(send.get()), host.data(), count * 4);
    });
    const auto before = Clock::now();
    ASSERT_EQ(kumiAllReduce(send.get(), recv.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess)
        << kumiGetLastError();
    // Returned although the stream has not even reached the call (it waits on `started`).
    EXPECT_LT(Clock::now() - before, std::chrono::seconds(5));
    // The stream's later work: reads the result as a kernel would.
    std::vector<float> got(count, -1.f);
    s.enqueue([&] { std::memcpy(got.data(), FakeDevice::real(recv.get()), count * 4); });
    // Long enough for a call that did not wait for its stream to read the input too early.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    go.set_value();
    s.sync();
    EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << r;
    kumiResult_t async = kumiInternalError;
    ASSERT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
    EXPECT_EQ(async, kumiSuccess) << kumiGetLastError();
  });
}

TEST_F(DevicePath, CallsQueuedBackToBackRunInOrderOnDifferentStreams) {
  constexpr std::size_t count = 4099;
  withOwnComm([&](kumiComm_t comm, int r) {
    auto a = fake->newStream(), b = fake->newStream();
    auto buf = fake->deviceMemory(0, count * 4), out = fake->deviceMemory(0, count * 4);
    const auto host = inputs(r, count);
    fake->copyNow(buf.get(), host.data(), count * 4);
    // In place on a, then a broadcast of its result from rank 0 on b, which must see the sum:
    // b is ordered after a by an event the test records, as a user would.
    ASSERT_EQ(kumiAllReduce(buf.get(), buf.get(), count, kumiFloat32, kumiSum, comm, a.get()), kumiSuccess);
    auto mark = fake->mark(a.get());
    auto reached = static_cast<FakeDevice::Mark&>(*mark).reached;
    FakeDevice::stream(b.get()).enqueue([reached] {
      while (!reached->load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    });
    ASSERT_EQ(kumiBroadcast(buf.get(), out.get(), count, kumiFloat32, 0, comm, b.get()), kumiSuccess);
    fake->synchronize(b.get());
    std::vector<float> got(count);
    fake->copyNow(got.data(), out.get(), count * 4);
    EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << r;
  });
}

// Runs a device allreduce of `count` floats on comm and checks it; every rank calls it.
void deviceAllReduce(kumiComm_t comm, int r, std::size_t count) {
  const auto host = inputs(r, count);
  auto stream = fake->newStream();
  auto send = fake->deviceMemory(0, count * 4), recv = fake->deviceMemory(0, count * 4);
  fake->copyNow(send.get(), host.data(), count * 4);
  ASSERT_EQ(kumiAllReduce(send.get(), recv.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
  fake->synchronize(stream.get());
  std::vector<float> got(count);
  fake->copyNow(got.data(), recv.get(), count * 4);
  EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << r;
}

TEST_F(DevicePath, RanksThatMixHostAndDeviceBuffersInACollectiveAreTold) {
  // Device and host calls are planned for different links, so they may run different schedules:
  // a rank on host buffers among ranks on device buffers fails the call with a message that
  // names both kinds, on every rank, within the timeout; nothing is silently mismatched.
  constexpr std::size_t count = 70001;
  withOwnComm([&](kumiComm_t comm, int r) {
    const auto host = inputs(r, count);
    std::string message;
    if (r == 1) {
      std::vector<float> got(count, -1.f);
      EXPECT_NE(kumiAllReduce(host.data(), got.data(), count, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
      message = kumiGetLastError();
    } else {
      auto stream = fake->newStream();
      auto buf = fake->deviceMemory(0, count * 4);
      fake->copyNow(buf.get(), host.data(), count * 4);
      ASSERT_EQ(kumiAllReduce(buf.get(), buf.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
      fake->synchronize(stream.get());
      kumiResult_t async = kumiSuccess;
      ASSERT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
      EXPECT_NE(async, kumiSuccess) << "rank " << r;
      message = kumiGetLastError();
    }
    EXPECT_NE(message.find("device buffers"), std::string::npos) << "rank " << r << ": " << message;
    // The rank that saw the two stamps says what to do; the others hear its story.
    EXPECT_NE(message.find("every rank of a collective must pass device buffers, or every rank host buffers"),
              std::string::npos)
        << "rank " << r << ": " << message;
  });
}

TEST_F(DevicePath, ASendAndItsReceiveMayUseDifferentMemory) {
  constexpr std::size_t count = 70001;
  withOwnComm([&](kumiComm_t comm, int r) {
    float one = 1;  // a first call: every rank has its GPU and says it maps peers' memory
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    if (r > 1) return;
    auto stream = fake->newStream();
    if (r == 0) {  // device buffer to rank 1's host buffer, and back into device memory
      const auto mine = inputs(0, count);
      auto buf = fake->deviceMemory(0, count * 4);
      fake->copyNow(buf.get(), mine.data(), count * 4);
      ASSERT_EQ(kumiSend(buf.get(), count, kumiFloat32, 1, comm, stream.get()), kumiSuccess);
      ASSERT_EQ(kumiRecv(buf.get(), count, kumiFloat32, 1, comm, stream.get()), kumiSuccess);
      fake->synchronize(stream.get());
      std::vector<float> got(count);
      fake->copyNow(got.data(), buf.get(), count * 4);
      EXPECT_EQ(got, inputs(1, count));
    } else {
      std::vector<float> got(count, -1.f);
      const long before = fake->opened.load();
      ASSERT_EQ(kumiRecv(got.data(), count, kumiFloat32, 0, comm, nullptr), kumiSuccess) << kumiGetLastError();
      EXPECT_EQ(got, inputs(0, count));
      EXPECT_GT(fake->opened.load(), before) << "the host receive read no device message in place";
      const auto mine = inputs(1, count);
      ASSERT_EQ(kumiSend(mine.data(), count, kumiFloat32, 0, comm, nullptr), kumiSuccess) << kumiGetLastError();
    }
    kumiResult_t async = kumiInternalError;
    ASSERT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
    EXPECT_EQ(async, kumiSuccess) << kumiGetLastError();
  });
}

int hostsOf(kumiComm_t comm) {
  int host = -1, hosts = 0;
  for (int q = 0; q < worldSize; ++q)
    if (kumiCommHost(comm, q, &host) == kumiSuccess) hosts = std::max(hosts, host + 1);
  return hosts;
}

// Run only where kumirun simulates several hosts (mp.device_path.nodes2.np4).
TEST_F(DevicePath, AcrossHostsTheDeviceAllReduceIsHierarchical) {
  withOwnComm([&](kumiComm_t comm, int r) {
    ASSERT_GE(hostsOf(comm), 2) << "this test needs ranks on several hosts (kumirun --nodes)";
    float one = 1;  // a first call: every rank has its GPU
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long before = fake->opened.load(), staged = fake->toHost.load();
    deviceAllReduce(comm, r, 1 << 20);  // 4 MiB: the network crossed once per host, not per rank
    const char* algo = nullptr;
    ASSERT_EQ(kumiCommGetAlgorithm(comm, &algo), kumiSuccess);
    EXPECT_STREQ(algo, "hierarchical") << "rank " << r;
    // Inside a host the shards moved by name (peer memory read in place).
    int mine = -1, host = -1, peersHere = 0;
    kumiCommHost(comm, r, &mine);
    for (int q = 0; q < worldSize; ++q) {
      kumiCommHost(comm, q, &host);
      peersHere += q != r && host == mine;
    }
    if (peersHere > 0) {
      EXPECT_GT(fake->opened.load(), before) << "rank " << r << " read no peer's memory by name";
    }
    // Between hosts (TCP, or RDMA at the default GPUDirect level with no topology) sends are staged.
    EXPECT_GT(fake->toHost.load(), staged) << "rank " << r << " copied nothing out to host memory";
  });
}

// GPUDirect RDMA (the Soft-RoCE lane runs it, with RDMA between the hosts of kumirun --nodes;
// over TCP there is no NIC to read device memory, so the other lanes leave it out by name).
// The NIC is given the device slots once per arena (again when a larger call grows it), no send
// is copied out to host memory (inside a host they go by name, between hosts the NIC reads
// them: the imitation's device memory faults on any host read), and the sums are right.
// Receives the NIC writes into device slots are the sender's choice per message, so not counted.
TEST_F(DevicePath, AcrossHostsOverRdmaTheNicReadsAndWritesTheDeviceSlots) {
  kumi::ScopedEnv level("KUMI_IB_GDR_LEVEL", "SYS");  // no topology places rxe beside a GPU
  withOwnComm([&](kumiComm_t comm, int r) {
    ASSERT_GE(hostsOf(comm), 2) << "this test needs ranks on several hosts (kumirun --nodes)";
    float one = 1;  // a first call: every rank has its GPU
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long before = fake->nicPins.load(), staged = fake->toHost.load();
    deviceAllReduce(comm, r, 1 << 20);
    const long first = fake->nicPins.load();
    EXPECT_GT(first, before) << "rank " << r << ": the NIC was never given device memory";
    deviceAllReduce(comm, r, 1 << 20);
    deviceAllReduce(comm, r, 333333);
    EXPECT_EQ(fake->nicPins.load(), first) << "rank " << r << ": the device slots were registered again";
    EXPECT_EQ(fake->toHost.load(), staged) << "rank " << r << ": a send was staged through host memory";
    deviceAllReduce(comm, r, 3 << 20);  // larger messages: a larger arena, registered anew
    EXPECT_GT(fake->nicPins.load(), first) << "rank " << r << ": the grown arena was not registered";
    EXPECT_EQ(fake->toHost.load(), staged) << "rank " << r << ": a send was staged through host memory";
  });
}

// kumiCommRegister of a device buffer only records it (the NIC is never asked to pin it as host
// memory, which it is not), and the buffer works in calls as before.
TEST_F(DevicePath, AcrossHostsOverRdmaRegisteringADeviceBufferOnlyRecordsIt) {
  withOwnComm([&](kumiComm_t comm, int r) {
    constexpr std::size_t count = 1 << 18;
    auto buffer = fake->deviceMemory(0, count * 4);
    void* handle = nullptr;
    ASSERT_EQ(kumiCommRegister(comm, buffer.get(), count * 4, &handle), kumiSuccess) << kumiGetLastError();
    const auto host = inputs(r, count);
    fake->copyNow(buffer.get(), host.data(), count * 4);
    auto stream = fake->newStream();
    ASSERT_EQ(kumiAllReduce(buffer.get(), buffer.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    fake->synchronize(stream.get());
    std::vector<float> got(count);
    fake->copyNow(got.data(), buffer.get(), count * 4);
    EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << r;
    EXPECT_EQ(kumiCommDeregister(comm, handle), kumiSuccess);
  });
}

TEST_F(DevicePath, DeviceBuffersOfOneHostTravelByNameAndPeersAreMappedOnce) {
  withOwnComm([&](kumiComm_t comm, int r) {
    float one = 1;  // a first call: every rank has its GPU and says it maps peers' memory
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long before = fake->opened.load();
    deviceAllReduce(comm, r, 70001);
    const long first = fake->opened.load();
    // Every rank receives from a peer of this host, reading its device slots in place.
    EXPECT_GT(first, before) << "rank " << r << " read no peer's memory by name";
    deviceAllReduce(comm, r, 70001);  // the same peers' same arenas: mapped already
    deviceAllReduce(comm, r, 70001);
    EXPECT_EQ(fake->opened.load(), first) << "rank " << r << ": the peers' arenas were opened again";
  });
}

// A name goes as soon as its copy is queued, with the slot's IPC event recorded after the copy;
// the reader's queue waits for the event. Rank 0's stream runs far behind: a reader that did not
// wait would read its slots before the copies into them ran, and the sums would be wrong.
TEST_F(DevicePath, NamesGoAtOnceAndTheReadersQueueWaitsForTheWritersEvent) {
  withOwnComm([&](kumiComm_t comm, int r) {
    float one = 1;
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long records = fake->eventRecords.load(), waits = fake->eventWaits.load();
    const int delay = fake->maxDelayUs;
    if (r == 0) fake->maxDelayUs = 3000;
    for (int k = 0; k < 3; ++k) deviceAllReduce(comm, r, 70001);
    fake->maxDelayUs = delay;
    EXPECT_GT(fake->eventRecords.load(), records) << "rank " << r << " sent no name with an event";
    EXPECT_GT(fake->eventWaits.load(), waits) << "rank " << r << "'s queue never waited for a peer's event";
  });
}

TEST_F(DevicePath, WithoutIpcEventsNamesWaitForTheHostToSeeTheirCopy) {
  fake->ipcEvents = false;  // every rank, before the communicator's executor exists
  withOwnComm([&](kumiComm_t comm, int r) {
    float one = 1;
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long records = fake->eventRecords.load(), waits = fake->eventWaits.load(), opened = fake->opened.load();
    const int delay = fake->maxDelayUs;
    if (r == 0) fake->maxDelayUs = 3000;
    deviceAllReduce(comm, r, 70001);
    fake->maxDelayUs = delay;
    EXPECT_GT(fake->opened.load(), opened) << "rank " << r << " read no peer's slot by name";
    EXPECT_EQ(fake->eventRecords.load(), records) << "rank " << r;
    EXPECT_EQ(fake->eventWaits.load(), waits) << "rank " << r;
  });
  fake->ipcEvents = true;
}

TEST_F(DevicePath, MemoryThatCannotBeSharedIsStaged) {
  withOwnComm([&](kumiComm_t comm, int r) {
    float one = 1;
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    fake->ipc = false;  // every rank: the new communicator's slots cannot be exported
    const long before = fake->opened.load();
    deviceAllReduce(comm, r, 70001);
    EXPECT_EQ(fake->opened.load(), before) << "rank " << r;
    fake->ipc = true;
  });
}

TEST_F(DevicePath, APeerThatCannotReadThisGpuIsSentBytes) {
  withOwnComm([&](kumiComm_t comm, int r) {
    // Rank 0 sits on another GPU without peer access to the shared one (as across sockets, or
    // with CUDA_VISIBLE_DEVICES hiding it): names neither way between it and the others.
    const auto shared = fake->readable;
    if (r == 0) fake->readable = {"0000:aa:00.0"};
    float one = 1;
    ASSERT_EQ(kumiAllReduce(&one, &one, 1, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    const long before = fake->opened.load();
    deviceAllReduce(comm, r, 70001);
    if (r == 0) {
      EXPECT_EQ(fake->opened.load(), before) << "rank 0 mapped memory of a GPU it cannot read";
    }
    fake->readable = shared;
  });
}

TEST_F(DevicePath, SendRecvAndBarrierFollowTheStream) {
  constexpr std::size_t count = 100003;
  withOwnComm([&](kumiComm_t comm, int r) {
    const int next = (r + 1) % worldSize, prev = (r + worldSize - 1) % worldSize;
    auto stream = fake->newStream();
    auto out = fake->deviceMemory(0, count * 4), in = fake->deviceMemory(0, count * 4);
    const auto mine = inputs(r, count);
    fake->copyNow(out.get(), mine.data(), count * 4);
    // A ring shift: even ranks send first, odd ones receive first, all on the stream.
    if (r % 2 == 0) {
      ASSERT_EQ(kumiSend(out.get(), count, kumiFloat32, next, comm, stream.get()), kumiSuccess) << kumiGetLastError();
      ASSERT_EQ(kumiRecv(in.get(), count, kumiFloat32, prev, comm, stream.get()), kumiSuccess) << kumiGetLastError();
    } else {
      ASSERT_EQ(kumiRecv(in.get(), count, kumiFloat32, prev, comm, stream.get()), kumiSuccess) << kumiGetLastError();
      ASSERT_EQ(kumiSend(out.get(), count, kumiFloat32, next, comm, stream.get()), kumiSuccess) << kumiGetLastError();
    }
    // A barrier given a stream is ordered on it like any other call.
    ASSERT_EQ(kumiBarrier(comm, stream.get()), kumiSuccess) << kumiGetLastError();
    fake->synchronize(stream.get());
    std::vector<float> got(count);
    fake->copyNow(got.data(), in.get(), count * 4);
    EXPECT_EQ(got, inputs(prev, count)) << "rank " << r;
    kumiResult_t async = kumiInternalError;
    ASSERT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
    EXPECT_EQ(async, kumiSuccess) << kumiGetLastError();
  });
}

TEST_F(DevicePath, AHostCallWaitsForTheDeviceCallsBeforeIt) {
  constexpr std::size_t count = 1000;
  withOwnComm([&](kumiComm_t comm, int r) {
    auto stream = fake->newStream();
    FakeStream& s = FakeDevice::stream(stream.get());
    auto send = fake->deviceMemory(0, count * 4), recv = fake->deviceMemory(0, count * 4);
    const auto host = inputs(r, count);
    fake->copyNow(send.get(), host.data(), count * 4);
    s.enqueue([] { std::this_thread::sleep_for(std::chrono::milliseconds(100)); });  // the stream is busy
    ASSERT_EQ(kumiAllReduce(send.get(), recv.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    std::vector<float> in = host, out(count);
    ASSERT_EQ(kumiAllReduce(in.data(), out.data(), count, kumiFloat32, kumiSum, comm, nullptr), kumiSuccess);
    EXPECT_EQ(wrongSums(out, worldSize), 0u);
    // The device call is over (the stream may still be finishing its gate): its result is in.
    std::vector<float> got(count);
    fake->copyNow(got.data(), recv.get(), count * 4);
    EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << r;
    fake->synchronize(stream.get());
  });
}

TEST_F(DevicePath, HostBuffersGivenWithAStreamWaitForIt) {
  withOwnComm([&](kumiComm_t comm, int r) {
    auto stream = fake->newStream();
    std::vector<float> in(16, 0.f), out(16, -1.f);
    // The stream's earlier work fills the host buffer (as a device-to-host copy would).
    FakeDevice::stream(stream.get()).enqueue([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const auto v = inputs(r, in.size());
      std::copy(v.begin(), v.end(), in.begin());
    });
    ASSERT_EQ(kumiAllReduce(in.data(), out.data(), in.size(), kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    EXPECT_EQ(wrongSums(out, worldSize), 0u);
  });
}

TEST_F(DevicePath, RefusedBuffersAreNamedAtTheCall) {
  withOwnComm([&](kumiComm_t comm, int) {
    auto stream = fake->newStream();
    auto dev = fake->deviceMemory(0, 64), managed = fake->managedMemory(64);
    std::vector<float> host(16);
    EXPECT_EQ(kumiAllReduce(dev.get(), host.data(), 16, kumiFloat32, kumiSum, comm, stream.get()), kumiInvalidArgument);
    EXPECT_NE(std::string(kumiGetLastError()).find("one rank's buffers must both be device memory or both host memory"),
              std::string::npos)
        << kumiGetLastError();
    EXPECT_EQ(kumiAllReduce(managed.get(), managed.get(), 16, kumiFloat32, kumiSum, comm, stream.get()),
              kumiInvalidArgument);
    EXPECT_NE(std::string(kumiGetLastError()).find("managed memory"), std::string::npos) << kumiGetLastError();
    // Bad arguments on device buffers are refused at the call too, not later on the stream.
    // (kumiNumOps: past the last op yet inside the enum's range, which C++ requires of the value.)
    EXPECT_EQ(kumiAllReduce(dev.get(), dev.get(), 16, kumiFloat32, kumiNumOps, comm, stream.get()), kumiInvalidArgument);
    EXPECT_NE(std::string(kumiGetLastError()).find("invalid reduction op 5"), std::string::npos) << kumiGetLastError();
    kumiResult_t async = kumiInternalError;
    EXPECT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
    EXPECT_EQ(async, kumiSuccess);
    // The communicator still works: nothing refused reached the other rank.
    EXPECT_EQ(kumiAllReduce(dev.get(), dev.get(), 16, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    fake->synchronize(stream.get());
  });
}

TEST_F(DevicePath, AFailureAfterTheCallReleasesTheStreamAndIsTheAsyncError) {
  withOwnComm([&](kumiComm_t comm, int r) {
    if (r == 1) {
      // Calls something else: the others' allreduce fails (the ranks disagree) after it returned.
      EXPECT_EQ(kumiBarrier(comm, nullptr), kumiRemoteError) << kumiGetLastError();
      return;
    }
    auto stream = fake->newStream();
    auto buf = fake->deviceMemory(0, 4096);
    const auto before = Clock::now();
    ASSERT_EQ(kumiAllReduce(buf.get(), buf.get(), 1024, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    fake->synchronize(stream.get());  // released although the call failed: no GPU left hanging
    EXPECT_LT(Clock::now() - before, std::chrono::seconds(30));
    kumiResult_t async = kumiSuccess;
    ASSERT_EQ(kumiCommGetAsyncError(comm, &async), kumiSuccess);
    EXPECT_NE(async, kumiSuccess);
    const std::string message = kumiGetLastError();
    EXPECT_NE(message.find("allreduce"), std::string::npos) << message;
    // Later calls return it at once.
    EXPECT_EQ(kumiAllReduce(buf.get(), buf.get(), 1024, kumiFloat32, kumiSum, comm, stream.get()), async);
    EXPECT_NE(std::string(kumiGetLastError()).find("failed earlier"), std::string::npos) << kumiGetLastError();
  });
}

TEST_F(DevicePath, AbortReleasesStreamsHeldByQueuedCalls) {
  withOwnComm([&](kumiComm_t comm, int r) {
    if (r == 1) return;  // leaves: rank 0's calls can never complete
    auto stream = fake->newStream();
    auto buf = fake->deviceMemory(0, 4096);
    for (int k = 0; k < 3; ++k)
      ASSERT_EQ(kumiAllReduce(buf.get(), buf.get(), 1024, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_EQ(kumiCommAbort(comm), kumiSuccess);
    fake->synchronize(stream.get());  // all three released
  });
}

TEST_F(DevicePath, DestroyRunsTheCallsStillQueued) {
  constexpr std::size_t count = 5000;
  std::shared_ptr<void> stream = fake->newStream();
  kumi::gpu::Memory buf = fake->deviceMemory(0, count * 4);
  int rank = 0;
  withOwnComm([&](kumiComm_t comm, int r) {
    rank = r;
    const auto host = inputs(r, count);
    fake->copyNow(buf.get(), host.data(), count * 4);
    ASSERT_EQ(kumiAllReduce(buf.get(), buf.get(), count, kumiFloat32, kumiSum, comm, stream.get()), kumiSuccess);
    // withOwnComm destroys the communicator now, with the call most likely still queued.
  });
  fake->synchronize(stream.get());
  std::vector<float> got(count);
  fake->copyNow(got.data(), buf.get(), count * 4);
  EXPECT_EQ(wrongSums(got, worldSize), 0u) << "rank " << rank;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  fake = std::make_shared<FakeDevice>();
  kumi::gpu::installDevice(fake);
  if (kumiCommInitFromEnv(&world) != kumiSuccess) {
    std::fprintf(stderr, "init failed: %s\n", kumiGetLastError());
    return 1;
  }
  kumiCommSize(world, &worldSize);
  const int rc = RUN_ALL_TESTS();
  kumiCommDestroy(world);
  return rc;
}
