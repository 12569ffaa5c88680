// A shared-memory segment: a file in a tmpfs directory (KUMI_SHM_DIR, /dev/shm by default)
// mapped by the ranks of one host. Created with mode 0600 and space reserved up front, so that a
// /dev/shm too small for it is a clear error at set-up instead of a SIGBUS in the middle of a
// collective. Segments are unlinked as soon as every peer has mapped them, so a crash later
// leaves nothing behind; a crash earlier leaves a file that any later creator in the directory
// removes: the creator holds an flock on it until the unlink, so an unlockable file has an owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "core/socket.hpp"

namespace kumi::shm {

// Written at the start of every segment so that leftovers can be judged safely.
struct SegmentOwner {
  std::uint64_t magic;
  std::uint64_t token;      // random per segment: a peer checks it opened the right one
  std::uint64_t pidNsHash;  // the creator's PID namespace (pids mean nothing outside it)
  std::int64_t pid;
};
constexpr std::uint64_t kSegmentMagic = 0x6b756d6973686d34ull;  // "kumishm4": bump when the layout changes

class Segment {
 public:
  Segment() = default;
  // Creates dir/name of `bytes` bytes, zero-filled, and locks it. Abandoned segments in dir are
  // removed first; a live file of the same name is an error.
  static Segment create(const std::string& dir, const std::string& name, std::size_t bytes);
  // Maps an existing segment; throws kumiSystemError (ENOENT and friends) with the path.
  static Segment attach(const std::string& dir, const std::string& name);
  Segment(Segment&& o) noexcept { *this = std::move(o); }
  Segment& operator=(Segment&& o) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  SegmentOwner& owner() const { return *reinterpret_cast<SegmentOwner*>(data_); }
  // Removes the name; the mapping stays valid until every process unmaps it.
  void unlink();

 private:
  void release();
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
  bool linked_ = false;
  Fd lock_;  // the creator's flock, held while the name exists
};

// This process as a segment owner (PID namespace, pid).
SegmentOwner currentOwner();
// Removes kumi segments in dir whose owner is gone (nobody holds their lock); returns how many.
int reclaimLeftovers(const std::string& dir);

}  // namespace kumi::shm
