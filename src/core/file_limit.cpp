#include "core/file_limit.hpp"

#include <sys/resource.h>

namespace kumi {

FileLimit raiseFileLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return {"?", "?", false, "?"};
  const rlim_t before = lim.rlim_cur;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) lim.rlim_cur = before;
  }
  auto text = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v); };
  // One descriptor per rank, and a few for the listener, epoll and logs.
  const std::string room = lim.rlim_cur == RLIM_INFINITY ? std::string("any number of")
                                                         : std::to_string(lim.rlim_cur > 64 ? lim.rlim_cur - 64 : 0);
  return {text(before), text(lim.rlim_cur), lim.rlim_cur != before, room};
}

}  // namespace kumi
