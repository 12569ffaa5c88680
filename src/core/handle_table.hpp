// The C API's handles, by address. A call checks its handle here before touching it, so a
// destroyed or made-up handle is an error instead of a use of freed memory. The table also keeps
// the (small) memory of every handle it ever held: an address is then never handed out twice, and
// a stale handle can never be taken for a newer communicator that happens to sit at its address.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

namespace kumi {

class HandleTable {
 public:
  enum class State { Unknown, Live, Retired };

  // Takes a new handle; it is live from now on.
  void adopt(std::shared_ptr<void> handle) {
    const void* key = handle.get();
    std::lock_guard<std::mutex> lock(mutex_);
    entries_[key] = Entry{std::move(handle), true};
  }

  State state(const void* handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stateLocked(handle);
  }

  // Runs f() if the handle is live, under the table's lock so that nobody retires it meanwhile
  // (f pins it, say). Returns the handle's state.
  template <class F>
  State ifLive(const void* handle, F&& f) {
    std::lock_guard<std::mutex> lock(mutex_);
    const State s = stateLocked(handle);
    if (s == State::Live) f();
    return s;
  }

  // Retires a live handle if allow() agrees (asked under the lock). Returns the state before:
  // only the one caller that sees Live with allow() true has retired it.
  template <class F>
  State retireIf(const void* handle, F&& allow) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(handle);
    if (it == entries_.end()) return State::Unknown;
    if (!it->second.live) return State::Retired;
    if (allow()) it->second.live = false;
    return State::Live;
  }

 private:
  struct Entry {
    std::shared_ptr<void> memory;  // kept after retirement: the address stays taken
    bool live = false;
  };

  State stateLocked(const void* handle) const {
    auto it = entries_.find(handle);
    if (it == entries_.end()) return State::Unknown;
    return it->second.live ? State::Live : State::Retired;
  }

  mutable std::mutex mutex_;
  std::unordered_map<const void*, Entry> entries_;
};

}  // namespace kumi
