// The one home of process-wide state: identity used in log lines, counters that must agree
// across ranks, and services that outlive a communicator (a store server hosted by rank 0).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/handle_table.hpp"

namespace kumi {

class Registry {
 public:
  static Registry& instance();

  const std::string& hostname() const { return hostname_; }
  std::atomic<int> logRank{-1};
  // Counts communicators created from scratch in this process. Ranks that create them in the
  // same order derive the same store namespace, so repeated init/destroy cycles do not collide.
  std::atomic<long long> rootCommCount{0};
  // The C API's communicator handles: which are live, so that a destroyed one is refused.
  HandleTable handles;
  // Why a rank without RDMA uses TCP between hosts is said once per process, not per communicator.
  std::atomic<bool> toldTcpFallback{false};

  // Whether a service is held under key (e.g. this process serves a store).
  bool hosts(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    return services_.count(key) != 0;
  }

  // Stores service under key in place of any (tests put imitations of hardware there).
  void install(const std::string& key, std::shared_ptr<void> service) {
    std::lock_guard<std::mutex> lock(mutex_);
    services_[key] = std::move(service);
  }

  // Returns the service stored under key, creating it with make() when absent.
  template <class T>
  std::shared_ptr<T> service(const std::string& key, const std::function<std::shared_ptr<T>()>& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = services_.find(key);
    if (it != services_.end()) return std::static_pointer_cast<T>(it->second);
    auto made = make();
    services_[key] = made;
    return made;
  }

 private:
  Registry();
  std::string hostname_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<void>> services_;
};

}  // namespace kumi
