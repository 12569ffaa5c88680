#include "rendezvous/store.hpp"

#include "core/error.hpp"

namespace kumi {

void Store::wait(const std::vector<std::string>& keys, Timeout timeout) {
  auto missing = waitFor(keys, timeout);
  if (missing.empty()) return;
  std::string names;
  for (const auto& k : missing) names += cat(names.empty() ? "" : ", ", k);
  fail(kumiTimeout, describe(), ": keys still missing after ", timeout.count(), " ms: ", names);
}

}  // namespace kumi
