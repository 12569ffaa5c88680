// The pieces behind the reliability promises that need no processes: call stamps, the flight
// recorder's ring and text, CRC32C, and the fault injection tests rely on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "comm/call_stamp.hpp"
#include "comm/communicator.hpp"
#include "comm/flight_dumper.hpp"
#include "comm/flight_recorder.hpp"
#include "core/crc32c.hpp"
#include "core/strings.hpp"

namespace kumi {
namespace {

CallArgs call(Collective c, std::uint64_t count, kumiDataType_t t = kumiFloat32, kumiRedOp_t op = kumiSum, int root = 0) {
  CallArgs a;
  a.coll = c;
  a.count = count;
  a.type = t;
  a.op = op;
  a.root = root;
  return a;
}

TEST(CallStamp, EveryArgumentThatMustAgreeChangesTheStamp) {
  const CallStamp base = stampCall(call(Collective::AllReduce, 1024), 17, 0);
  EXPECT_NE(base, stampCall(call(Collective::AllReduce, 2048), 17, 0));
  EXPECT_NE(base, stampCall(call(Collective::AllReduce, 1024, kumiInt32), 17, 0));
  EXPECT_NE(base, stampCall(call(Collective::AllReduce, 1024, kumiFloat32, kumiMax), 17, 0));
  EXPECT_NE(base, stampCall(call(Collective::AllReduce, 1024), 18, 0));
  EXPECT_NE(base, stampCall(call(Collective::ReduceScatter, 1024), 17, 0));
  // An all-to-all is told apart from every other collective of the same count and type.
  for (Collective other : {Collective::AllReduce, Collective::ReduceScatter, Collective::AllGather, Collective::Broadcast,
                           Collective::Reduce, Collective::Barrier, Collective::Send})
    EXPECT_NE(stampCall(call(Collective::AllToAll, 1024), 17, 0), stampCall(call(other, 1024), 17, 0)) << collectiveName(other);
  EXPECT_NE(stampCall(call(Collective::AllToAll, 1024), 17, 0), stampCall(call(Collective::AllToAll, 1025), 17, 0));
  EXPECT_NE(stampCall(call(Collective::AllToAll, 1024), 17, 0), stampCall(call(Collective::AllToAll, 1024, kumiInt32), 17, 0));
  EXPECT_NE(stampCall(call(Collective::Broadcast, 8, kumiFloat32, kumiSum, 0), 1, 0),
            stampCall(call(Collective::Broadcast, 8, kumiFloat32, kumiSum, 1), 1, 0));
}

TEST(CallStamp, ArgumentsACallIgnoresDoNotChangeIt) {
  // The op of an allgather, the root of an allreduce, the type and count of a barrier, and the
  // sending rank of a collective mean nothing: ranks passing different ones agree.
  EXPECT_EQ(stampCall(call(Collective::AllGather, 64, kumiFloat32, kumiSum), 3, 0),
            stampCall(call(Collective::AllGather, 64, kumiFloat32, kumiMax), 3, 5));
  EXPECT_EQ(stampCall(call(Collective::AllReduce, 64, kumiFloat32, kumiSum, 0), 3, 0),
            stampCall(call(Collective::AllReduce, 64, kumiFloat32, kumiSum, 2), 3, 1));
  EXPECT_EQ(stampCall(call(Collective::Barrier, 0, kumiFloat32), 9, 0), stampCall(call(Collective::Barrier, 7, kumiInt8), 9, 3));
  EXPECT_EQ(stampCall(call(Collective::AllToAll, 64, kumiFloat32, kumiSum, 0), 3, 0),
            stampCall(call(Collective::AllToAll, 64, kumiFloat32, kumiMax, 4), 3, 2));
}

TEST(CallStamp, BothEndsOfASendRecvPairStampAlike) {
  // Rank 2 sends to rank 5 (root = peer 5); rank 5 receives from rank 2 (root = peer 2).
  const CallStamp send = stampCall(call(Collective::Send, 100, kumiFloat32, kumiSum, 5), 4, 2);
  const CallStamp recv = stampCall(call(Collective::Recv, 100, kumiFloat32, kumiSum, 2), 4, 2);
  EXPECT_EQ(send, recv);
  EXPECT_NE(send, stampCall(call(Collective::Recv, 200, kumiFloat32, kumiSum, 2), 4, 2));
  EXPECT_EQ(describeStamp(send), "send/recv count=100 float32 from rank 2, #4 between them");
}

TEST(CallStamp, DescriptionsNameEveryField) {
  EXPECT_EQ(describeStamp(stampCall(call(Collective::AllReduce, 1024, kumiBfloat16, kumiAvg), 17, 0)),
            "allreduce count=1024 bfloat16 avg, #17");
  EXPECT_EQ(describeStamp(stampCall(call(Collective::Reduce, 3, kumiInt64, kumiMin, 6), 2, 0)),
            "reduce count=3 int64 min root=6, #2");
  EXPECT_EQ(describeStamp(stampCall(call(Collective::AllGather, 5), 1, 0)), "allgather count=5 float32, #1");
  EXPECT_EQ(describeStamp(stampCall(call(Collective::Barrier, 0), 8, 0)), "barrier, #8");
  EXPECT_EQ(describeStamp(stampCall(call(Collective::AllToAll, 5, kumiInt8), 2, 0)), "alltoall count=5 int8, #2");
  // A receive stamps as its send: a stamp naming Recv is no call kumi makes.
  EXPECT_NE(describeStamp(CallStamp{std::uint64_t{static_cast<std::uint8_t>(Collective::Recv)} << 56, 0}).find("unknown call"),
            std::string::npos);
  EXPECT_NE(describeStamp(CallStamp{~0ull, 0}).find("unknown call"), std::string::npos);
}

TEST(FlightRecorder, KeepsTheLastCallsInOrderWithTheirState) {
  FlightRecorder r(4, {"kumi/j/g0/c0", "j", 1, 3, "node-a"}, "");
  std::vector<std::uint64_t> ids;
  for (int i = 1; i <= 6; ++i) {
    ids.push_back(r.begin(stampCall(call(Collective::AllReduce, 10 * i), i, 1), "ring", {0, 2}, 40 * i));
    if (i < 6) r.finish(ids.back(), i == 5 ? FlightRecorder::State::Failed : FlightRecorder::State::Done);
  }
  r.finish(ids[0], FlightRecorder::State::Failed);  // overwritten: must change nothing
  const std::string text = r.render("test");
  std::istringstream in(text);
  std::vector<std::string> calls;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') calls.push_back(line);
  ASSERT_EQ(calls.size(), 4u) << text;
  EXPECT_EQ(calls[0].rfind("3 done ", 0), 0u) << text;
  EXPECT_NE(calls[0].find(" ring 120 0,2 | allreduce count=30 float32 sum, #3"), std::string::npos) << text;
  EXPECT_EQ(calls[2].rfind("5 FAILED ", 0), 0u) << text;
  EXPECT_EQ(calls[3].rfind("6 RUNNING ", 0), 0u) << text;
  EXPECT_NE(calls[3].find("+ ring"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 1 of 3 on node-a"), std::string::npos);
  EXPECT_NE(text.find("because: test"), std::string::npos);
  EXPECT_NE(text.find("# 2 earlier calls not kept (KUMI_FLIGHT_RECORDER=4)"), std::string::npos) << text;
  const std::string last2 = r.render("log", 2);
  EXPECT_EQ(last2.find("4 done"), std::string::npos) << last2;
  EXPECT_NE(last2.find("5 FAILED"), std::string::npos) << last2;
  EXPECT_NE(last2.find("earlier calls not shown here"), std::string::npos) << last2;
}

TEST(FlightRecorder, ManyPeersAreCountedAndFilesAreWritten) {
  FlightRecorder r(8, {"kumi/j/g0/c3", "job/x", 0, 9, "h"}, ::testing::TempDir());
  r.finish(r.begin(stampCall(call(Collective::AllGather, 1), 1, 0), "ring", {1, 2, 3, 4, 5, 6, 7, 8}, 4),
           FlightRecorder::State::Done);
  const std::string path = r.write("why");
  EXPECT_NE(path.find("kumi-flight-job_x-c3-r0-p"), std::string::npos) << path;
  std::ifstream f(path);
  std::stringstream got;
  got << f.rdbuf();
  EXPECT_NE(got.str().find(" 1,2,3,4,5,6,+2 | "), std::string::npos) << got.str();
  EXPECT_THROW(r.write("why", "/nonexistent-dir/f"), Error);
  EXPECT_EQ(FlightRecorder(8, {}, "").write("no dir"), "");
}

TEST(FlightRecorder, OffWhenEmpty) {
  FlightRecorder r(0, {}, "");
  EXPECT_EQ(r.begin(CallStamp{}, "ring", {}, 0), 0u);
  r.finish(0, FlightRecorder::State::Done);
  // Nothing recorded: the dump is its three header lines only.
  const std::string text = r.render("off");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
}

TEST(FlightDumper, SignalNames) {
  EXPECT_EQ(parseSignal("USR2"), SIGUSR2);
  EXPECT_EQ(parseSignal("SIGUSR1"), SIGUSR1);
  EXPECT_EQ(parseSignal("12"), 12);
  EXPECT_THROW(parseSignal("9"), Error);  // SIGKILL cannot be caught
  EXPECT_THROW(parseSignal("HUP?"), Error);
  EXPECT_THROW(parseSignal("0"), Error);
}

TEST(Crc32c, KnownAnswersAndChaining) {
  // RFC 3720 (iSCSI) test vectors.
  std::vector<unsigned char> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[static_cast<std::size_t>(i)] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8a9136aau);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62a8ab43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46dd794eu);
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  // Chained over pieces (odd lengths and offsets) equals one pass.
  std::vector<unsigned char> big(1000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<unsigned char>(i * 7 + 3);
  const std::uint32_t whole = crc32c(big.data(), big.size());
  EXPECT_EQ(crc32c(big.data() + 3, 997, crc32c(big.data(), 3)), whole);
  EXPECT_EQ(hex32(0x046b0cc7u), "046b0cc7");
}

TEST(WireChecks, InjectionFlipsOneBitOfEveryNthPart) {
  WireChecks off;
  std::uint32_t counter = 0;
  std::vector<unsigned char> data(64, 0);
  EXPECT_FALSE(injectCorruption(off, counter, data.data(), data.size()));
  WireChecks every3{true, 3};
  int flips = 0;
  for (int i = 0; i < 9; ++i) {
    std::vector<unsigned char> before = data;
    if (injectCorruption(every3, counter, data.data(), data.size())) {
      ++flips;
      int bits = 0;
      for (std::size_t k = 0; k < data.size(); ++k) bits += __builtin_popcount(before[k] ^ data[k]);
      EXPECT_EQ(bits, 1);
    } else {
      EXPECT_EQ(before, data);
    }
  }
  EXPECT_EQ(flips, 3);
  EXPECT_FALSE(injectCorruption(every3, counter, data.data(), 0));  // nothing to flip
}

}  // namespace
}  // namespace kumi
