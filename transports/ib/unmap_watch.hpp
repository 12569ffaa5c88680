// Tells when registered memory stops being the memory the NIC holds. A registration pins the
// pages a buffer had when it was registered; if the program then unmaps the buffer (free() of a
// large block, brk shrinking the heap), moves it (mremap) or drops its pages (MADV_DONTNEED), a
// new buffer at the same addresses gets other pages, and a transfer through the old registration
// would read or write the freed ones: silently wrong data. Deregistering before freeing avoids
// it, as with NCCL; this watch is the safety net for programs that do not.
//
// It uses userfaultfd's non-cooperative events (UNMAP, REMOVE, REMAP), which the kernel delivers
// for every watched range, whatever unmapped it, with no interposition on malloc or munmap. One
// watch serves the whole process (the kernel lets only one userfaultfd watch a range, and two
// communicators may register the same buffer); a thread reads its events, since the kernel holds
// the unmapping thread until they are read. Where userfaultfd is not allowed (kernels before
// 5.11 without privilege, seccomp profiles that forbid it) open() says why and registrations
// go unwatched.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/socket.hpp"

namespace kumi::ib {

class UnmapWatch {
  struct Opened {};  // only open() makes one (make_shared needs a public constructor)

 public:
  using Range = std::pair<std::uintptr_t, std::uintptr_t>;  // [begin, end), page-aligned

  // A watch, or nullptr with *why saying what the kernel refused.
  static std::shared_ptr<UnmapWatch> open(std::string* why);
  // The process's watch, opened on first use; nullptr (and why) where it cannot be.
  static std::shared_ptr<UnmapWatch> shared(std::string* why);
  UnmapWatch(Opened, Fd uffd, Fd stop);
  ~UnmapWatch();
  UnmapWatch(const UnmapWatch&) = delete;
  UnmapWatch& operator=(const UnmapWatch&) = delete;

  // Where a watch reports: each subscriber collects the ranges that went since it last looked.
  class Subscriber {
   public:
    // Ranges unmapped, moved or emptied since the last call; cheap when there are none. An
    // unmapping that returned before this call is in the result: the kernel lets munmap return
    // once the watch has read the event, so this waits for an event being read to be recorded.
    std::vector<Range> take();

   private:
    friend class UnmapWatch;
    const std::atomic<int>* reading_ = nullptr;
    std::atomic<bool> any_{false};
    std::mutex mutex_;
    std::vector<Range> ranges_;
  };
  std::shared_ptr<Subscriber> subscribe();

  // Watches [begin, end) (page-aligned) for `who`; returns an id for unwatch(), or 0 with *why
  // (e.g. a file mapping, or a range another userfaultfd already watches).
  std::uint64_t watch(std::uintptr_t begin, std::uintptr_t end, std::string* why);
  // Stops watching; pages still watched for another id stay watched.
  void unwatch(std::uint64_t id);

 private:
  void run();
  void gone(std::uintptr_t begin, std::uintptr_t end, bool unregister);
  void releasePages(std::uintptr_t begin, std::uintptr_t end);  // under mutex_

  struct Watched {
    std::uint64_t id;
    Range range;
    bool live;  // still registered with the kernel
  };
  Fd uffd_, stop_;
  pid_t pid_;
  std::mutex mutex_;
  std::vector<Watched> watched_;
  std::vector<std::weak_ptr<Subscriber>> subscribers_;
  std::uint64_t nextId_ = 1;
  std::atomic<int> reading_{0};  // 1 from before a read of events until they are recorded
  std::thread thread_;
};

}  // namespace kumi::ib
