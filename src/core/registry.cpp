#include "core/registry.hpp"

#include <unistd.h>

namespace kumi {

Registry::Registry() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) buf[0] = '\0';
  hostname_ = buf[0] ? buf : "unknown-host";
}

Registry& Registry::instance() {
  static Registry registry;
  return registry;
}

}  // namespace kumi
