#include "transports/shm/segment.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "topology/host_id.hpp"

namespace kumi::shm {
namespace {


// Opens a would-be kumi segment without blocking (a FIFO planted under its name must not hang
// us) and only if it is a regular file of ours.
Fd openOwnFile(const std::string& path, int flags) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) return Fd();
  return fd;
}

// A segment's creator holds an exclusive flock on it until it unlinks the name, so a leftover
// that can be locked has no live owner, whatever PID namespace it came from and whether its pid
// was reused since. Files without the magic are judged only once they are a minute old (a
// creator writes it within milliseconds). Returns whether the file was removed.
bool removeIfAbandoned(const std::string& path) {
  Fd fd = openOwnFile(path, O_RDONLY);
  if (!fd.valid() || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return false;
  SegmentOwner o{};
  const bool isKumi = ::pread(fd.get(), &o, sizeof o, 0) == static_cast<ssize_t>(sizeof o) && o.magic == kSegmentMagic;
  struct stat st {};
  const bool old = ::fstat(fd.get(), &st) == 0 && ::time(nullptr) - st.st_mtime > 60;
  if (!isKumi && !old) return false;
  if (::unlink(path.c_str()) != 0) return false;
  KUMI_INFO("removed abandoned shared-memory segment ", path, isKumi ? cat(" of pid ", o.pid) : std::string());
  return true;
}

}  // namespace

SegmentOwner currentOwner() {
  static const std::uint64_t pidNs = fnv1a(namespaceId("pid"));
  return {kSegmentMagic, 0, pidNs, static_cast<std::int64_t>(::getpid())};
}

int reclaimLeftovers(const std::string& dir) {
  int removed = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d))
    if (std::strncmp(e->d_name, "kumi-", 5) == 0 && removeIfAbandoned(dir + "/" + e->d_name)) ++removed;
  ::closedir(d);
  return removed;
}

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    path_ = std::move(o.path_);
    linked_ = std::exchange(o.linked_, false);
    lock_ = std::move(o.lock_);
  }
  return *this;
}

Segment::~Segment() { release(); }

void Segment::release() {
  if (linked_) unlink();
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

void Segment::unlink() {
  if (linked_ && ::unlink(path_.c_str()) != 0 && errno != ENOENT)
    KUMI_WARN("could not remove shared-memory segment ", path_, ": ", std::strerror(errno));
  linked_ = false;
  lock_.reset();  // nothing left to guard
}

Segment Segment::create(const std::string& dir, const std::string& name, std::size_t bytes) {
  Segment s;
  s.path_ = dir + "/" + name;
  reclaimLeftovers(dir);
  Fd fd(::open(s.path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid() && errno == EEXIST) {
    // Names carry a random part, so this is a leftover of a crash or someone else's file.
    if (!removeIfAbandoned(s.path_))
      fail(kumiSystemError, "shared-memory segment ", s.path_,
           " exists and is in use, or is not this user's regular file; remove it or set KUMI_SHM_DIR");
    fd = Fd(::open(s.path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  }
  if (!fd.valid()) fail(kumiSystemError, "cannot create shared-memory segment ", s.path_, ": ", std::strerror(errno));
  // Another process's reclaimLeftovers may hold the lock for a moment while it looks at the new,
  // still empty file (and leaves it: no magic yet, not old); wait for it, boundedly.
  for (int tries = 0; ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0; ++tries) {
    if (errno != EWOULDBLOCK || tries == 1000)
      fail(kumiSystemError, "cannot lock shared-memory segment ", s.path_, ": ", std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.linked_ = true;
  // Reserve the pages now: tmpfs is sparse, and a full one only shows when a page is touched,
  // as SIGBUS. posix_fallocate makes that an error here, with the numbers.
  if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); rc != 0) {
    struct statvfs vfs {};
    std::string space = ::statvfs(dir.c_str(), &vfs) == 0
                            ? cat(formatBytes(static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize), " free of ",
                                  formatBytes(static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize))
                            : std::string("size unknown");
    fail(kumiSystemError, "shared memory: cannot reserve ", formatBytes(bytes), " for ", s.path_, " (", std::strerror(rc),
         "; ", dir, " has ", space, "). ", dir,
         " is too small for this many local ranks: enlarge it (docker run --shm-size=1g; in Kubernetes mount an "
         "emptyDir with medium: Memory at /dev/shm), or set KUMI_TRANSPORT=tcp");
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) fail(kumiSystemError, "cannot map shared-memory segment ", s.path_, ": ", std::strerror(errno));
  s.data_ = static_cast<std::byte*>(p);
  s.size_ = bytes;
  SegmentOwner o = currentOwner();
  o.token = std::random_device{}() | (std::uint64_t(std::random_device{}()) << 32);
  o.magic = 0;
  std::memcpy(s.data_, &o, sizeof o);
  // The magic goes last, so that a reader never trusts a half-written owner record.
  std::atomic_ref<std::uint64_t>(s.owner().magic).store(kSegmentMagic, std::memory_order_release);
  s.lock_ = std::move(fd);
  return s;
}

Segment Segment::attach(const std::string& dir, const std::string& name) {
  Segment s;
  s.path_ = dir + "/" + name;
  Fd fd = openOwnFile(s.path_, O_RDWR);
  if (!fd.valid())
    fail(kumiSystemError, "cannot open shared-memory segment ", s.path_, ": ",
         errno ? std::strerror(errno) : "not a regular file of this user");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size < static_cast<off_t>(sizeof(SegmentOwner)))
    fail(kumiSystemError, "shared-memory segment ", s.path_, " is truncated");
  void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) fail(kumiSystemError, "cannot map shared-memory segment ", s.path_, ": ", std::strerror(errno));
  s.data_ = static_cast<std::byte*>(p);
  s.size_ = static_cast<std::size_t>(st.st_size);
  if (std::atomic_ref<std::uint64_t>(s.owner().magic).load(std::memory_order_acquire) != kSegmentMagic)
    fail(kumiSystemError, "shared-memory segment ", s.path_, " is not a kumi segment");
  return s;
}

}  // namespace kumi::shm
