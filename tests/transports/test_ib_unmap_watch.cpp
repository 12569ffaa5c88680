// UnmapWatch against the real kernel: each way memory stops being what was registered (munmap,
// free() of a large block, MADV_DONTNEED, mremap) is reported once, unwatched ranges are not,
// and memory emptied under the watch can still be touched (the watch must not hold the thread).
// Needs userfaultfd (root, or Linux 5.11+); where it is refused, the tests say why and skip.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "transports/ib/unmap_watch.hpp"

namespace kumi::ib {
namespace {

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

class UnmapWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    watch_ = UnmapWatch::open(&why);
    if (!watch_) GTEST_SKIP() << "userfaultfd is not available here: " << why;
    sub_ = watch_->subscribe();
  }
  static char* map(std::size_t pages) {
    void* p = ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    std::memset(p, 0x5a, pages * kPage);  // present, as registered (pinned) pages are
    return static_cast<char*>(p);
  }
  static UnmapWatch::Range rangeOf(const char* p, std::size_t pages) {
    const auto b = reinterpret_cast<std::uintptr_t>(p);
    return {b, b + pages * kPage};
  }
  // take() right after the unmapping call returned must already hold its range.
  std::vector<UnmapWatch::Range> taken() { return sub_->take(); }

  std::shared_ptr<UnmapWatch> watch_;
  std::shared_ptr<UnmapWatch::Subscriber> sub_;
};

TEST_F(UnmapWatchTest, MunmapIsReportedBeforeItReturns) {
  char* p = map(4);
  std::string why;
  const auto r = rangeOf(p, 4);
  ASSERT_NE(watch_->watch(r.first, r.second, &why), 0u) << why;
  EXPECT_TRUE(taken().empty());
  ASSERT_EQ(::munmap(p, 4 * kPage), 0);
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], r);
  EXPECT_TRUE(taken().empty()) << "reported once";
}

TEST_F(UnmapWatchTest, PartialMunmapInvalidatesTheWholeRange) {
  char* p = map(4);
  std::string why;
  const auto r = rangeOf(p, 4);
  ASSERT_NE(watch_->watch(r.first, r.second, &why), 0u) << why;
  ASSERT_EQ(::munmap(p + kPage, kPage), 0);
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], r);
  ::munmap(p, kPage);
  ::munmap(p + 2 * kPage, 2 * kPage);
  EXPECT_TRUE(taken().empty()) << "a range is reported once, however many pieces go";
}

TEST_F(UnmapWatchTest, FreeOfALargeMallocBlockIsReported) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator keeps freed blocks in quarantine: free() unmaps nothing "
                  "(the Release lane runs this test against glibc's malloc)";
#endif
  // Far above glibc's mmap threshold: served by mmap and given back by munmap on free().
  const std::size_t bytes = 64u << 20;
  char* p = static_cast<char*>(std::malloc(bytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, bytes);
  const auto b = (reinterpret_cast<std::uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  const auto e = (reinterpret_cast<std::uintptr_t>(p) + bytes) & ~(kPage - 1);
  std::string why;
  ASSERT_NE(watch_->watch(b, e, &why), 0u) << why;
  std::free(p);
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], UnmapWatch::Range(b, e));
}

TEST_F(UnmapWatchTest, DontneedIsReportedAndTheMemoryStaysUsable) {
  char* p = map(2);
  std::string why;
  const auto r = rangeOf(p, 2);
  ASSERT_NE(watch_->watch(r.first, r.second, &why), 0u) << why;
  ASSERT_EQ(::madvise(p, 2 * kPage, MADV_DONTNEED), 0);
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], r);
  // The pages are gone (anonymous memory reads as zeros again) and touching them must not wait
  // on the watch: it let go of the range when it saw the event.
  EXPECT_EQ(p[0], 0);
  p[kPage] = 7;
  EXPECT_EQ(p[kPage], 7);
  ::munmap(p, 2 * kPage);
  EXPECT_TRUE(taken().empty()) << "no longer watched after the first report";
}

TEST_F(UnmapWatchTest, MremapIsReportedAndTheNewPlaceIsNotWatched) {
  char* p = map(2);
  std::string why;
  const auto r = rangeOf(p, 2);
  ASSERT_NE(watch_->watch(r.first, r.second, &why), 0u) << why;
  void* q = ::mremap(p, 2 * kPage, 64 * kPage, MREMAP_MAYMOVE);
  ASSERT_NE(q, MAP_FAILED);
  if (q == p) {
    ::munmap(q, 64 * kPage);
    GTEST_SKIP() << "the kernel grew the mapping in place; nothing moved";
  }
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], r);
  EXPECT_EQ(static_cast<char*>(q)[0], 0x5a) << "the pages moved with their contents";
  ::madvise(q, 64 * kPage, MADV_DONTNEED);
  static_cast<char*>(q)[0] = 1;  // would hang if the new place were still watched for faults
  ::munmap(q, 64 * kPage);
  EXPECT_TRUE(taken().empty());
}

TEST_F(UnmapWatchTest, UnwatchedRangesAreNotReported) {
  char* p = map(2);
  std::string why;
  const auto r = rangeOf(p, 2);
  const auto id = watch_->watch(r.first, r.second, &why);
  ASSERT_NE(id, 0u) << why;
  watch_->unwatch(id);
  ::munmap(p, 2 * kPage);
  EXPECT_TRUE(taken().empty());
}

TEST_F(UnmapWatchTest, OverlappingWatchesKeepSharedPagesWatched) {
  char* p = map(4);
  std::string why;
  const auto a = watch_->watch(rangeOf(p, 3).first, rangeOf(p, 3).second, &why);           // pages 0-2
  const auto b = watch_->watch(rangeOf(p + 2 * kPage, 2).first, rangeOf(p + 2 * kPage, 2).second, &why);  // 2-3
  ASSERT_NE(a, 0u) << why;
  ASSERT_NE(b, 0u) << why;
  watch_->unwatch(a);  // page 2 stays watched for b
  ASSERT_EQ(::munmap(p + 2 * kPage, kPage), 0);
  const auto got = taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], rangeOf(p + 2 * kPage, 2));
  ::munmap(p, 2 * kPage);
  ::munmap(p + 3 * kPage, kPage);
  EXPECT_TRUE(taken().empty()) << "pages 0-1 were unwatched with a";
}

TEST_F(UnmapWatchTest, EverySubscriberHearsAndOthersUnmapsAreQuiet) {
  auto second = watch_->subscribe();
  char* p = map(1);
  char* q = map(1);
  std::string why;
  ASSERT_NE(watch_->watch(rangeOf(p, 1).first, rangeOf(p, 1).second, &why), 0u) << why;
  ::munmap(q, kPage);  // never watched
  EXPECT_TRUE(taken().empty());
  ::munmap(p, kPage);
  EXPECT_EQ(taken().size(), 1u);
  EXPECT_EQ(second->take().size(), 1u);
}

TEST_F(UnmapWatchTest, RefusesWhatItCannotWatch) {
  std::string why;
  EXPECT_EQ(watch_->watch(1, kPage, &why), 0u);
  EXPECT_NE(why.find("whole pages"), std::string::npos) << why;
  // A file mapping (this program's own file; /tmp may be tmpfs, which userfaultfd takes as
  // shared memory): userfaultfd watches anonymous and shared memory only.
  const int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* f = ::mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(f, MAP_FAILED);
  why.clear();
  const auto b = reinterpret_cast<std::uintptr_t>(f);
  EXPECT_EQ(watch_->watch(b, b + kPage, &why), 0u);
  EXPECT_NE(why.find("userfaultfd cannot watch it"), std::string::npos) << why;
  ::munmap(f, kPage);
}

TEST(UnmapWatchShared, OnePerProcess) {
  std::string why1, why2;
  auto a = UnmapWatch::shared(&why1);
  auto b = UnmapWatch::shared(&why2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(why1, why2);
  if (!a) {
    EXPECT_FALSE(why1.empty()) << "a watch that cannot be opened says why";
  }
}

}  // namespace
}  // namespace kumi::ib
