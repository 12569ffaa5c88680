// Multi-process tests, run under kumirun with 1..5 ranks over TCP: every collective x data type x
// op x size class x in/out of place (all-to-all: out of place only), split communicators,
// several communicators used at once from different threads, point-to-point, and barrier. Every
// rank runs the same tests in the same order; results are checked element by element on every rank.
#include <gtest/gtest.h>
#include <kumi/kumi.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/element.hpp"
#include "gpu/device.hpp"
#include "../common/fake_device.hpp"
#include "../common/reference_data.hpp"

namespace {

kumi::Comm* world = nullptr;
// KUMI_TEST_DEVICE=cuda (a GPU) or fake (tests/common/fake_device.hpp): every call's buffers are
// device memory, filled and read back by copies, and the call is given a stream of its own.
kumi::gpu::Device* device = nullptr;
std::shared_ptr<void> stream;

using kumi::test::expectedReduction;
using kumi::test::inputValue;

const std::uint64_t kSizes[] = {0, 1, 7, 1023, 100003};
const kumiRedOp_t kOps[] = {kumiSum, kumiProd, kumiMin, kumiMax, kumiAvg};
enum class Coll { AllReduce, ReduceScatter, AllGather, Broadcast, Reduce, AllToAll };
const Coll kColls[] = {Coll::AllReduce, Coll::ReduceScatter, Coll::AllGather,
                       Coll::Broadcast, Coll::Reduce,        Coll::AllToAll};
const char* name(Coll c) {
  switch (c) {
    case Coll::AllReduce: return "allreduce";
    case Coll::ReduceScatter: return "reduce_scatter";
    case Coll::AllGather: return "allgather";
    case Coll::Broadcast: return "broadcast";
    case Coll::AllToAll: return "alltoall";
    default: return "reduce";
  }
}

// Runs one call and returns the number of wrong output elements on this rank.
std::uint64_t runOne(const kumi::Comm& comm, Coll coll, kumiDataType_t t, kumiRedOp_t op, std::uint64_t count,
                     bool inPlace) {
  const int n = comm.size(), r = comm.rank();
  const std::size_t es = kumiTypeSize(t);
  const std::uint64_t un = static_cast<std::uint64_t>(n);
  const int root = n - 1;
  std::uint64_t sendElems = count, recvElems = count;
  if (coll == Coll::ReduceScatter || coll == Coll::AllToAll) sendElems = count * un;
  if (coll == Coll::AllGather || coll == Coll::AllToAll) recvElems = count * un;
  std::vector<std::byte> sb(sendElems * es + 8), rb(recvElems * es + 8, std::byte{0x5A});
  std::byte* send = sb.data();
  std::byte* recv = rb.data();
  std::byte* fill = sb.data();
  if (inPlace) {
    if (coll == Coll::AllGather) {
      send = recv + static_cast<std::uint64_t>(r) * count * es;
      fill = send;
    } else if (coll == Coll::ReduceScatter) {
      recv = send + static_cast<std::uint64_t>(r) * count * es;
    } else {
      send = recv;
      fill = recv;
    }
  }
  for (std::uint64_t i = 0; i < sendElems; ++i) kumi::storeElement(t, fill, i, inputValue(r, i, op));
  kumi::gpu::Memory ds, dr;
  kumiStream_t st = nullptr;
  if (device) {
    ds = device->deviceMemory(0, sb.size());
    dr = device->deviceMemory(0, rb.size());
    device->copyNow(ds.get(), sb.data(), sb.size());
    device->copyNow(dr.get(), rb.data(), rb.size());
    auto onDevice = [&](std::byte* p) {
      return p >= rb.data() && p < rb.data() + rb.size() ? dr.get() + (p - rb.data()) : ds.get() + (p - sb.data());
    };
    send = onDevice(send);
    recv = onDevice(recv);
    st = stream.get();
  }
  kumiResult_t res = kumiSuccess;
  switch (coll) {
    case Coll::AllReduce: res = kumiAllReduce(send, recv, count, t, op, comm.get(), st); break;
    case Coll::ReduceScatter: res = kumiReduceScatter(send, recv, count, t, op, comm.get(), st); break;
    case Coll::AllGather: res = kumiAllGather(send, recv, count, t, comm.get(), st); break;
    case Coll::Broadcast: res = kumiBroadcast(send, recv, count, t, root, comm.get(), st); break;
    case Coll::Reduce: res = kumiReduce(send, recv, count, t, op, root, comm.get(), st); break;
    case Coll::AllToAll: res = kumiAllToAll(send, recv, count, t, comm.get(), st); break;
  }
  EXPECT_EQ(res, kumiSuccess) << kumiGetLastError();
  if (device) {
    // The stream's later work waits for the call: once it is done, the results are there.
    device->synchronize(st);
    kumiResult_t async = kumiSuccess;
    EXPECT_EQ(kumiCommGetAsyncError(comm.get(), &async), kumiSuccess);
    EXPECT_EQ(async, kumiSuccess) << kumiGetLastError();
    device->copyNow(sb.data(), ds.get(), sb.size());
    device->copyNow(rb.data(), dr.get(), rb.size());
    recv = recv >= dr.get() && recv < dr.get() + rb.size() ? rb.data() + (recv - dr.get()) : sb.data() + (recv - ds.get());
  }
  if (coll == Coll::Reduce && r != root) return 0;
  std::uint64_t wrong = 0;
  const std::uint64_t outElems = recvElems;
  for (std::uint64_t i = 0; i < outElems; ++i) {
    double want;
    switch (coll) {
      case Coll::AllReduce:
      case Coll::Reduce: want = expectedReduction(t, op, n, i); break;
      case Coll::ReduceScatter: want = expectedReduction(t, op, n, static_cast<std::uint64_t>(r) * count + i); break;
      case Coll::AllGather: want = kumi::roundToType(t, inputValue(static_cast<int>(i / count), i % count, op)); break;
      case Coll::AllToAll:  // block j: block r of rank j's input
        want = kumi::roundToType(
            t, inputValue(static_cast<int>(i / count), static_cast<std::uint64_t>(r) * count + i % count, op));
        break;
      default: want = kumi::roundToType(t, inputValue(root, i, op)); break;
    }
    if (kumi::loadElement(t, recv, i) != want) ++wrong;
  }
  if (!inPlace) {  // nothing written past the output
    for (std::size_t b = recvElems * es; b < rb.size(); ++b)
      if (rb[b] != std::byte{0x5A}) ++wrong;
  }
  return wrong;
}

class EveryCombination : public ::testing::TestWithParam<int> {};

TEST_P(EveryCombination, MatchesReference) {
  const auto t = static_cast<kumiDataType_t>(GetParam());
  for (Coll coll : kColls)
    for (kumiRedOp_t op : kOps) {
      const bool reduces = coll == Coll::AllReduce || coll == Coll::ReduceScatter || coll == Coll::Reduce;
      if (!reduces && op != kumiSum) continue;
      for (std::uint64_t count : kSizes)
        for (bool inPlace : {false, true}) {
          if (inPlace && coll == Coll::AllToAll) continue;  // refused: see AllToAllInPlaceIsRefused
          ASSERT_EQ(runOne(*world, coll, t, op, count, inPlace), 0u)
              << name(coll) << " " << kumiTypeSize(t) << "-byte type " << GetParam() << " op " << op << " count " << count
              << (inPlace ? " in place" : " out of place") << " rank " << world->rank() << " of " << world->size();
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, EveryCombination, ::testing::Range(0, static_cast<int>(kumiNumTypes)));

TEST(MultiProcess, LargeAllReduceSpansManySlices) {
  // 24 MiB: many pipeline slices per ring chunk, staging reuse, several sockets per peer.
  const std::size_t count = 6u << 20;
  std::vector<float> in(count), out(count, -1.f);
  for (std::size_t i = 0; i < count; ++i) in[i] = static_cast<float>(inputValue(world->rank(), i, kumiSum));
  world->allReduce(in.data(), out.data(), count);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < count; ++i) wrong += out[i] != static_cast<float>(expectedReduction(kumiFloat32, kumiSum, world->size(), i));
  EXPECT_EQ(wrong, 0u);
}

TEST(MultiProcess, RegisteredBuffersGiveTheSameResults) {
  // kumiCommRegister: over RDMA parts go straight from the registered buffers; elsewhere it only
  // records them. Results must not differ, and every handle is released once. 1 MiB per rank:
  // parts of whole staging slots, and the allgather's output spans several.
  const std::size_t count = 1u << 18;
  std::vector<float> in(count), out(count, -1.f), gathered(count * static_cast<std::size_t>(world->size()));
  for (std::size_t i = 0; i < count; ++i) in[i] = static_cast<float>(inputValue(world->rank(), i, kumiSum));
  void* hin = world->registerBuffer(in.data(), in.size() * sizeof(float));
  void* hout = world->registerBuffer(out.data(), out.size() * sizeof(float));
  void* hall = world->registerBuffer(gathered.data(), gathered.size() * sizeof(float));
  world->allReduce(in.data(), out.data(), count);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < count; ++i) wrong += out[i] != static_cast<float>(expectedReduction(kumiFloat32, kumiSum, world->size(), i));
  EXPECT_EQ(wrong, 0u);
  world->allGather(in.data(), gathered.data(), count);
  for (int r = 0; r < world->size(); ++r)
    for (std::size_t i = 0; i < count; i += 4099)
      EXPECT_EQ(gathered[static_cast<std::size_t>(r) * count + i], static_cast<float>(inputValue(r, i, kumiSum)));
  world->deregisterBuffer(hall);
  world->deregisterBuffer(hout);
  world->deregisterBuffer(hin);
  EXPECT_EQ(kumiCommDeregister(world->get(), hin), kumiInvalidArgument);
  EXPECT_NE(std::string(kumiGetLastError()).find("not a registration"), std::string::npos) << kumiGetLastError();
  void* h = nullptr;
  EXPECT_EQ(kumiCommRegister(world->get(), nullptr, 10, &h), kumiInvalidArgument);
  EXPECT_EQ(kumiCommRegister(world->get(), in.data(), 0, &h), kumiInvalidArgument);
}

TEST(MultiProcess, AllToAllInPlaceIsRefused) {
  // Every rank is refused before anything is sent, so the calls after it still match up.
  const int n = world->size(), r = world->rank();
  std::vector<std::int32_t> buf(static_cast<std::size_t>(n) * 3, r);
  EXPECT_EQ(kumiAllToAll(buf.data(), buf.data(), 3, kumiInt32, world->get(), nullptr), kumiInvalidArgument);
  EXPECT_NE(std::string(kumiGetLastError()).find("alltoall: in place (send buffer == receive buffer) is not supported"),
            std::string::npos)
      << kumiGetLastError();
  // Block j of the output is what rank j sent to this rank.
  std::vector<std::int32_t> out(buf.size(), -1);
  for (int j = 0; j < n; ++j)
    for (int e = 0; e < 3; ++e) buf[static_cast<std::size_t>(j * 3 + e)] = r * 1000 + j * 10 + e;
  world->allToAll(buf.data(), out.data(), 3);
  for (int j = 0; j < n; ++j)
    for (int e = 0; e < 3; ++e) EXPECT_EQ(out[static_cast<std::size_t>(j * 3 + e)], j * 1000 + r * 10 + e) << "from rank " << j;
}

TEST(MultiProcess, SplitByParity) {
  const int r = world->rank(), n = world->size();
  kumi::Comm sub = world->split(r % 2, -r);  // keys reverse the order inside each group
  ASSERT_TRUE(sub);
  const int groupSize = (n + 1 - r % 2) / 2;
  EXPECT_EQ(sub.size(), groupSize);
  // Ranks sorted by key -r: the highest old rank becomes rank 0.
  std::vector<int> members;
  for (int q = r % 2; q < n; q += 2) members.push_back(q);
  std::reverse(members.begin(), members.end());
  const int want = static_cast<int>(std::find(members.begin(), members.end(), r) - members.begin());
  EXPECT_EQ(sub.rank(), want);
  std::vector<std::int64_t> v = {r, 1};
  sub.allReduce(std::span<std::int64_t>(v));
  std::int64_t sum = 0;
  for (int q : members) sum += q;
  EXPECT_EQ(v[0], sum);
  EXPECT_EQ(v[1], groupSize);
  // A color < 0 opts out and yields no communicator.
  kumi::Comm none = world->split(r == 0 ? KUMI_SPLIT_NOCOLOR : 1, 0);
  EXPECT_EQ(static_cast<bool>(none), r != 0);
  if (none) {
    std::int32_t one = 1, total = 0;
    none.allReduce(&one, &total, 1);
    EXPECT_EQ(total, n - 1);
  }
}

TEST(MultiProcess, CommunicatorsInParallelThreads) {
  // Two communicators from splits, each driven by its own thread at the same time.
  kumi::Comm a = world->split(0, world->rank());
  kumi::Comm b = world->split(0, world->rank());
  std::vector<double> ra, rb;
  auto work = [](kumi::Comm& c, std::vector<double>& result, double scale) {
    std::vector<double> v(50000);
    for (int it = 0; it < 20; ++it) {
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * static_cast<double>(i % 13);
      c.allReduce(std::span<double>(v));
    }
    result = v;
  };
  std::thread ta(work, std::ref(a), std::ref(ra), 1.0);
  std::thread tb(work, std::ref(b), std::ref(rb), 3.0);
  ta.join();
  tb.join();
  const double n = world->size();
  for (std::size_t i = 0; i < ra.size(); i += 997) {
    EXPECT_EQ(ra[i], n * static_cast<double>(i % 13));
    EXPECT_EQ(rb[i], 3.0 * n * static_cast<double>(i % 13));
  }
}

TEST(MultiProcess, PointToPointRing) {
  const int r = world->rank(), n = world->size();
  if (n == 1) {
    std::int32_t x = 0;
    EXPECT_THROW(world->send(&x, 1, 0), kumi::Error);  // sending to oneself is refused
    return;
  }
  // Even ranks send first, odd ranks receive first. With an odd world two even neighbours both
  // send first; that completes because a send finishes once its bytes are in flight.
  std::vector<std::int32_t> out(4096), in(4096, -1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = r * 100000 + static_cast<std::int32_t>(i);
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  if (r % 2 == 0) {
    world->send(out.data(), out.size(), next);
    world->recv(in.data(), in.size(), prev);
  } else {
    world->recv(in.data(), in.size(), prev);
    world->send(out.data(), out.size(), next);
  }
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i], prev * 100000 + static_cast<std::int32_t>(i));
}

TEST(MultiProcess, BarrierIsRepeatable) {  for (int i = 0; i < 50; ++i) world->barrier();
  std::int32_t one = 1, total = 0;
  world->allReduce(&one, &total, 1);
  EXPECT_EQ(total, world->size());
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::shared_ptr<kumi::test::FakeDevice> fake;
  if (const char* d = std::getenv("KUMI_TEST_DEVICE"); d && *d) {
    if (std::string(d) == "fake") {
      fake = std::make_shared<kumi::test::FakeDevice>();
      kumi::gpu::installDevice(fake);
    } else if (std::string(d) != "cuda") {
      std::fprintf(stderr, "KUMI_TEST_DEVICE=%s: expected cuda or fake\n", d);
      return 2;
    }
    std::string why;
    device = kumi::gpu::device(&why);
    if (!device) {
      std::fprintf(stderr, "KUMI_TEST_DEVICE=%s but no device: %s\n", d, why.c_str());
      return 1;
    }
    stream = device->newStream();
  }
  try {
    kumi::Comm comm = kumi::Comm::fromEnv();
    world = &comm;
    int rc = RUN_ALL_TESTS();
    world = nullptr;
    stream.reset();
    if (fake) std::printf("fake device: %ld queue operations ran\n", fake->ops.load());
    return rc;
  } catch (const kumi::Error& e) {
    std::fprintf(stderr, "init failed: %s\n", e.what());
    return 1;
  }
}
