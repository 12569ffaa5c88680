// kumiGetUniqueId / kumiCommInitRankWithId through the public C API, in one process: bytes that
// are no id are refused, and a failed id carries its error to the ranks given it. Forming a job
// from an id takes one process per rank: tests/scripts/test_mpi_init.py does it under mpirun.
#include <gtest/gtest.h>
#include <kumi/kumi.h>

#include <cstring>
#include <string>

namespace {

TEST(UniqueId, BytesThatAreNoIdAreRefused) {
  kumiUniqueId junk;
  std::memset(&junk, 0x5a, sizeof junk);
  kumiComm_t comm = nullptr;
  EXPECT_EQ(kumiCommInitRankWithId(&comm, 2, junk, 1), kumiInvalidArgument);
  EXPECT_NE(std::string(kumiGetLastError()).find("not an id made by kumiGetUniqueId"), std::string::npos)
      << kumiGetLastError();
  EXPECT_EQ(comm, nullptr);
  kumiUniqueId ok;
  ASSERT_EQ(kumiGetUniqueId(&ok), kumiSuccess);
  EXPECT_EQ(kumiCommInitRankWithId(&comm, 2, ok, -1), kumiInvalidArgument);
  EXPECT_NE(std::string(kumiGetLastError()).find("must not be negative"), std::string::npos) << kumiGetLastError();
  EXPECT_EQ(kumiGetUniqueId(nullptr), kumiInvalidArgument);
}

TEST(UniqueId, AFailedIdCarriesItsErrorToEveryRank) {
  ASSERT_EQ(::setenv("KUMI_SOCKET_IFNAME", "=nosuchif0", 1), 0);
  kumiUniqueId id;
  const kumiResult_t made = kumiGetUniqueId(&id);
  const std::string why = kumiGetLastError();
  ::unsetenv("KUMI_SOCKET_IFNAME");
  ASSERT_NE(made, kumiSuccess);
  EXPECT_NE(why.find("nosuchif0"), std::string::npos) << why;
  kumiComm_t comm = nullptr;
  EXPECT_EQ(kumiCommInitRankWithId(&comm, 3, id, 2), kumiRemoteError);
  const std::string seen = kumiGetLastError();
  EXPECT_NE(seen.find("the unique id was made by a process that failed"), std::string::npos) << seen;
  EXPECT_NE(seen.find("nosuchif0"), std::string::npos) << seen;
}

}  // namespace
