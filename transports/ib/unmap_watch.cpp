#include "transports/ib/unmap_watch.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/registry.hpp"
#include "core/error.hpp"

namespace kumi::ib {
namespace {

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

constexpr std::uint64_t kFeatures = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP;

std::uintptr_t pageSize() {
  static const auto p = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

// Unregisters [begin, end) from the kernel's watch; ranges already unmapped are no error.
void kernelUnregister(int uffd, std::uintptr_t begin, std::uintptr_t end) {
  uffdio_range r{begin, end - begin};
  ::ioctl(uffd, UFFDIO_UNREGISTER, &r);  // also wakes any thread faulting there
}

bool overlaps(const UnmapWatch::Range& r, std::uintptr_t begin, std::uintptr_t end) {
  return r.first < end && begin < r.second;
}

// Why the process's watch could not be opened, kept beside it so that every communicator can say.
struct SharedWatch {
  std::shared_ptr<UnmapWatch> watch;
  std::string why;
};

}  // namespace

std::shared_ptr<UnmapWatch> UnmapWatch::open(std::string* why) {
  // User-mode faults only: what an unprivileged process may ask for (Linux 5.11+). Then plain.
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0 && errno == EINVAL) fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) {
    *why = cat("userfaultfd: ", std::strerror(errno),
               errno == EPERM ? " (vm.unprivileged_userfaultfd is 0 and the kernel predates user-mode-only watches, "
                                "or a seccomp profile forbids it)"
                              : "");
    return nullptr;
  }
  Fd uffd(fd);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatures;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) {
    *why = cat("userfaultfd: the kernel does not report unmap, remove and remap events (", std::strerror(errno), ")");
    return nullptr;
  }
  Fd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop.valid()) {
    *why = cat("eventfd: ", std::strerror(errno));
    return nullptr;
  }
  auto w = std::make_shared<UnmapWatch>(Opened{}, std::move(uffd), std::move(stop));
  w->thread_ = std::thread([raw = w.get()] { raw->run(); });
  return w;
}

std::shared_ptr<UnmapWatch> UnmapWatch::shared(std::string* why) {
  const pid_t pid = ::getpid();
  // Per process id: a forked child inherits the object but not its thread, and opens its own.
  auto s = Registry::instance().service<SharedWatch>(cat("unmap-watch/", pid), [] {
    auto made = std::make_shared<SharedWatch>();
    made->watch = open(&made->why);
    return made;
  });
  if (!s->watch) *why = s->why;
  return s->watch;
}

UnmapWatch::UnmapWatch(Opened, Fd uffd, Fd stop) : uffd_(std::move(uffd)), stop_(std::move(stop)), pid_(::getpid()) {}

UnmapWatch::~UnmapWatch() {
  if (thread_.joinable()) {
    if (::getpid() == pid_) {
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
      thread_.join();
    } else {
      thread_.detach();  // a forked child: the thread was never here
    }
  }
  // Closing the userfaultfd drops every watch and releases any thread the kernel holds for it.
}

std::shared_ptr<UnmapWatch::Subscriber> UnmapWatch::subscribe() {
  auto s = std::make_shared<Subscriber>();
  s->reading_ = &reading_;
  std::lock_guard<std::mutex> lock(mutex_);
  subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(), [](auto& w) { return w.expired(); }),
                     subscribers_.end());
  subscribers_.push_back(s);
  return s;
}

std::vector<UnmapWatch::Range> UnmapWatch::Subscriber::take() {
  while (reading_->load() != 0) std::this_thread::yield();  // microseconds, and only right after an event
  if (!any_.load(std::memory_order_acquire)) return {};
  std::lock_guard<std::mutex> lock(mutex_);
  any_.store(false, std::memory_order_relaxed);
  return std::exchange(ranges_, {});
}

std::uint64_t UnmapWatch::watch(std::uintptr_t begin, std::uintptr_t end, std::string* why) {
  if (begin >= end || begin % pageSize() != 0 || end % pageSize() != 0) {
    *why = cat("range [", begin, ", ", end, ") is not whole pages");
    return 0;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // MISSING mode is the one every anonymous mapping takes; the registered pages are pinned and
  // present, so faults come only after MADV_DONTNEED, whose REMOVE event unregisters them first.
  uffdio_register reg{};
  reg.range = {begin, end - begin};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0) {
    *why = cat("userfaultfd cannot watch it (", std::strerror(errno),
               errno == EINVAL ? ": not anonymous or shared memory, e.g. a file mapping"
               : errno == EBUSY ? ": another userfaultfd watches it"
                                : "",
               ")");
    return 0;
  }
  const std::uint64_t id = nextId_++;
  watched_.push_back({id, {begin, end}, true});
  return id;
}

void UnmapWatch::unwatch(std::uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(watched_.begin(), watched_.end(), [&](const Watched& w) { return w.id == id; });
  if (it == watched_.end()) return;
  const Range r = it->range;
  const bool live = it->live;
  watched_.erase(it);
  if (live) releasePages(r.first, r.second);
}

void UnmapWatch::releasePages(std::uintptr_t begin, std::uintptr_t end) {
  // Unregister only the pages no other live watch covers: walk [begin, end) past covered runs.
  std::vector<Range> keep;
  for (const Watched& w : watched_)
    if (w.live && overlaps(w.range, begin, end)) keep.push_back(w.range);
  std::sort(keep.begin(), keep.end());
  std::uintptr_t at = begin;
  for (const Range& k : keep) {
    if (k.first > at) kernelUnregister(uffd_.get(), at, std::min(k.first, end));
    at = std::max(at, k.second);
    if (at >= end) return;
  }
  if (at < end) kernelUnregister(uffd_.get(), at, end);
}

void UnmapWatch::gone(std::uintptr_t begin, std::uintptr_t end, bool unregister) {
  std::vector<Range> hit;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Watched& w : watched_)
      if (w.live && overlaps(w.range, begin, end)) {
        w.live = false;
        hit.push_back(w.range);
      }
    // Pages emptied but still mapped (MADV_DONTNEED) must leave the watch at once: a touch
    // would otherwise wait for a page this thread never supplies.
    if (unregister)
      for (const Range& r : hit) kernelUnregister(uffd_.get(), r.first, r.second);
    if (hit.empty()) return;
    for (auto& weak : subscribers_)
      if (auto s = weak.lock()) {
        std::lock_guard<std::mutex> slock(s->mutex_);
        s->ranges_.insert(s->ranges_.end(), hit.begin(), hit.end());
        s->any_.store(true, std::memory_order_release);
      }
  }
}

void UnmapWatch::run() {
  pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    reading_.store(1);
    uffd_msg msgs[16];
    const ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
    if (n <= 0) {
      reading_.store(0);
      continue;  // EAGAIN: nothing after all
    }
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
      const uffd_msg& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_UNMAP:
          gone(m.arg.remove.start, m.arg.remove.end, false);
          break;
        case UFFD_EVENT_REMOVE:
          gone(m.arg.remove.start, m.arg.remove.end, true);
          break;
        case UFFD_EVENT_REMAP:
          // The pages moved: the old addresses are gone, and the new ones carry the watch along.
          gone(m.arg.remap.from, m.arg.remap.from + m.arg.remap.len, false);
          kernelUnregister(uffd_.get(), m.arg.remap.to, m.arg.remap.to + m.arg.remap.len);
          break;
        case UFFD_EVENT_PAGEFAULT: {
          // A page emptied before its REMOVE was handled: let the fault proceed, the range is stale.
          const std::uintptr_t page = m.arg.pagefault.address & ~(pageSize() - 1);
          gone(page, page + pageSize(), true);
          kernelUnregister(uffd_.get(), page, page + pageSize());
          break;
        }
        default:
          break;
      }
    }
    reading_.store(0);
  }
}

}  // namespace kumi::ib
