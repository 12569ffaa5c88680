#include "topology/host_id.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/strings.hpp"
#include "core/text_file.hpp"

namespace kumi {
namespace {

std::string firstLine(const char* path) { return trim(readFirstLine(path).value_or("")); }

}  // namespace

std::string bootId() { return firstLine("/proc/sys/kernel/random/boot_id"); }

// The inode of a namespace link identifies the namespace (what `lsns` shows).
std::string namespaceId(const char* kind) {
  struct stat st {};
  if (::stat(cat("/proc/self/ns/", kind).c_str(), &st) != 0) return "?";
  return cat(st.st_dev, ':', st.st_ino);
}

HostIdentity localHostIdentity(const std::string& override, const std::string& shmDir) {
  if (!override.empty()) return {override, "KUMI_HOSTID"};
  std::string boot = bootId();
  // Without a boot id (no /proc), fall back to the hostname: still keyed by the namespaces.
  if (boot.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    boot = cat("host:", host);
  }
  struct stat shm {};
  std::string shmDev = ::stat(shmDir.c_str(), &shm) == 0 ? cat(shm.st_dev) : "none";
  std::string detail = cat("boot ", boot, ", ipc ns ", namespaceId("ipc"), ", pid ns ", namespaceId("pid"), ", ",
                           shmDir, " dev ", shmDev);
  std::uint64_t h = fnv1a(detail);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return {hex, detail};
}

}  // namespace kumi
