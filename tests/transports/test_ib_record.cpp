// The RDMA connection record: what one rank sends another to connect. It round-trips, and any
// record a peer could send that is malformed or outside kumi's limits is an error naming the
// peer, never a crash or a value taken on trust.
#include <gtest/gtest.h>

#include <string>

#include "../common/test_util.hpp"
#include "core/error.hpp"
#include "transports/ib/connection_record.hpp"

namespace kumi::ib {
namespace {

using kumi::test::errorOf;

ConnectionRecord sample() {
  ConnectionRecord r;
  r.where = "mlx5_3:1";
  r.linkLayer = "roce";
  r.lid = 0;
  for (std::size_t i = 0; i < 16; ++i) r.gid[i] = static_cast<std::uint8_t>(i * 17);
  r.mtu = 3;
  r.psn = 0xabcdef;
  r.slots = 8;
  r.slotBytes = 512 << 10;
  r.ring = 0xffffffffffffff00ull;
  r.rkey = 0xfedcba98u;
  r.qpns = {17, 0xffffff, 4242};
  return r;
}

TEST(ConnectionRecord, RoundTrips) {
  const ConnectionRecord r = sample();
  const ConnectionRecord back = parseRecord(formatRecord(r), 3);
  EXPECT_EQ(back.where, r.where);
  EXPECT_EQ(back.linkLayer, r.linkLayer);
  EXPECT_EQ(back.gid, r.gid);
  EXPECT_EQ(back.mtu, r.mtu);
  EXPECT_EQ(back.psn, r.psn);
  EXPECT_EQ(back.slots, r.slots);
  EXPECT_EQ(back.slotBytes, r.slotBytes);
  EXPECT_EQ(back.ring, r.ring);
  EXPECT_EQ(back.rkey, r.rkey);
  EXPECT_EQ(back.qpns, r.qpns);
  EXPECT_LT(formatRecord(r).size(), 512u) << "must fit the bootstrap message";
}

TEST(ConnectionRecord, MalformedOrOutOfRangeRecordsNameThePeer) {
  const std::string good = formatRecord(sample());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    const auto at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  const std::vector<std::string> bad = {
      "",
      "GET / HTTP/1.1",
      with("kumi-ib2", "kumi-ib9"),
      with(" roce ", " iwarp "),
      with("00112233", "0011223z"),                      // not hex
      with("00112233", "001122"),                        // short GID
      with(" 3 11259375 ", " 9 11259375 "),              // MTU enum
      with(" 11259375 ", " -1 "),                        // PSN sign
      with(" 8 524288 ", " 6 524288 "),                  // slots not a power of two
      with(" 8 524288 ", " 8 99999999999 "),             // slot too large
      with("18446744073709551360", "18446744073709551616"),  // ring address overflows 64 bits
      with("18446744073709551360", "-1"),
      with(" 3 17 16777215 4242", " 0"),                 // no queue pair
      with(" 3 17 16777215 4242", " 3 17 16777215"),     // fewer than announced
      with(" 3 17 16777215 4242", " 3 17 16777216 4242"),  // QPN beyond 24 bits
      good + " extra",
  };
  for (const auto& text : bad) {
    const std::string msg = errorOf([&] { parseRecord(text, 5); }, kumiRemoteError);
    EXPECT_NE(msg.find("rank 5 sent a malformed RDMA connection record"), std::string::npos) << text << " -> " << msg;
  }
}

}  // namespace
}  // namespace kumi::ib
