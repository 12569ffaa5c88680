// The registration cache's bookkeeping, with a registrar that only counts: one registration per
// covering range, references per handle, and a new registration (never the old one) for a buffer
// at addresses whose registration was released.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/error.hpp"
#include "transports/ib/reg_cache.hpp"

namespace kumi::ib {
namespace {

struct Counting {
  int made = 0, released = 0;
  std::uint32_t nextKey = 100;
  RegistrationCache::Registrar registrar() {
    return [this](std::uintptr_t begin, std::size_t bytes) {
      ++made;
      Registration r{begin, begin + bytes, nextKey, nextKey + 1};
      nextKey += 2;
      // The owner's deleter is the release: it runs when the cache drops the entry.
      return std::make_pair(r, RegistrationCache::Owner(this, [](void* c) { ++static_cast<Counting*>(c)->released; }));
    };
  }
};

alignas(4096) char buffer[8 * 4096];

TEST(RegistrationCache, RegistersWholePagesOnceAndFindsCoveredRanges) {
  Counting c;
  RegistrationCache cache(c.registrar());
  const auto h = cache.add(buffer + 100, 5000);
  EXPECT_NE(h, 0u);
  EXPECT_EQ(c.made, 1);
  const Registration* r = cache.find(buffer + 100, 5000);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->begin, reinterpret_cast<std::uintptr_t>(buffer));  // rounded out to pages
  EXPECT_EQ(r->end, reinterpret_cast<std::uintptr_t>(buffer) + 2 * 4096);
  EXPECT_NE(cache.find(buffer, 2 * 4096), nullptr);          // the pages are covered
  EXPECT_EQ(cache.find(buffer + 4096, 4097), nullptr);      // one byte past them is not
  EXPECT_EQ(cache.find(buffer + 3 * 4096, 10), nullptr);
}

TEST(RegistrationCache, ACoveredRangeSharesTheRegistrationUntilItsLastHandleGoes) {
  Counting c;
  RegistrationCache cache(c.registrar());
  const auto outer = cache.add(buffer, 4 * 4096);
  const auto inner = cache.add(buffer + 4096, 100);
  EXPECT_NE(inner, outer);
  EXPECT_EQ(c.made, 1);
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_TRUE(cache.remove(outer));
  EXPECT_EQ(c.released, 0) << "the inner handle still holds the registration";
  EXPECT_NE(cache.find(buffer + 4096, 100), nullptr);
  EXPECT_TRUE(cache.remove(inner));
  EXPECT_EQ(c.released, 1);
  EXPECT_EQ(cache.find(buffer + 4096, 100), nullptr);
  EXPECT_FALSE(cache.remove(inner)) << "a handle is released once";
}

TEST(RegistrationCache, ABufferAtReleasedAddressesIsRegisteredAnew) {
  Counting c;
  RegistrationCache cache(c.registrar());
  const auto first = cache.add(buffer, 4096);
  const std::uint32_t oldKey = cache.find(buffer, 4096)->lkey;
  cache.remove(first);  // the user deregisters and frees; the allocator hands the addresses out again
  cache.add(buffer, 4096);
  EXPECT_EQ(c.made, 2);
  EXPECT_NE(cache.find(buffer, 4096)->lkey, oldKey) << "a stale registration was reused";
}

TEST(RegistrationCache, PartlyOverlappingBuffersGetTheirOwnRegistrations) {
  Counting c;
  RegistrationCache cache(c.registrar());
  cache.add(buffer, 2 * 4096);
  cache.add(buffer + 4096, 2 * 4096);
  EXPECT_EQ(c.made, 2);
  EXPECT_NE(cache.find(buffer + 2 * 4096, 4096), nullptr);
}

TEST(RegistrationCache, RefusesNullAndEmptyBuffers) {
  Counting c;
  RegistrationCache cache(c.registrar());
  EXPECT_THROW(cache.add(nullptr, 10), Error);
  EXPECT_THROW(cache.add(buffer, 0), Error);
  EXPECT_EQ(c.made, 0);
}

// A buffer freed without deregistering: its entry goes stale, is never found or shared again,
// and a new buffer at the same addresses gets a registration of its own. The stale one is
// released when the program's handle is removed, as before.
TEST(RegistrationCache, StaleEntriesAreNotFoundNorSharedButStillRemovable) {
  Counting c;
  RegistrationCache cache(c.registrar());
  const auto begin = reinterpret_cast<std::uintptr_t>(buffer);
  const auto old = cache.add(buffer, 2 * 4096);
  const auto other = cache.add(buffer + 4 * 4096, 4096);
  EXPECT_EQ(cache.invalidate(begin + 4096, begin + 2 * 4096), 1u) << "overlapping one page of the first entry";
  EXPECT_EQ(cache.staleEntries(), 1u);
  EXPECT_EQ(cache.find(buffer, 4096), nullptr);
  EXPECT_NE(cache.find(buffer + 4 * 4096, 4096), nullptr) << "the other entry is untouched";
  EXPECT_EQ(cache.invalidate(begin, begin + 2 * 4096), 0u) << "already stale";
  const auto fresh = cache.add(buffer, 2 * 4096);
  EXPECT_EQ(c.made, 3) << "a new registration, not a reference on the stale one";
  const Registration* r = cache.find(buffer, 2 * 4096);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->lkey, 104u);
  EXPECT_TRUE(cache.remove(old));
  EXPECT_EQ(c.released, 1) << "the stale registration goes with its last handle";
  EXPECT_EQ(cache.staleEntries(), 0u);
  EXPECT_TRUE(cache.remove(fresh));
  EXPECT_TRUE(cache.remove(other));
  EXPECT_EQ(c.released, 3);
  EXPECT_EQ(cache.invalidate(0, UINTPTR_MAX), 0u) << "nothing left";
}

}  // namespace
}  // namespace kumi::ib
