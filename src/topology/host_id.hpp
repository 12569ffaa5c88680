// Which ranks share a host. Two processes get the same host id only when shared memory between
// them really works: the same boot of the same kernel, the same IPC namespace, the same
// shared-memory mount, and the same PID namespace (cross-memory attach addresses the peer by pid,
// and liveness checks need to see it). Hostnames alone are not enough: containers on one node
// may share a hostname but not /dev/shm, and two pods may run on one node with different ones.
#pragma once

#include <string>

namespace kumi {

struct HostIdentity {
  std::string id;      // what ranks compare; KUMI_HOSTID when set
  std::string detail;  // how it was derived, for logs ("boot 3f2a.., ipc 4026531839, ...")
};

// override: KUMI_HOSTID (empty = derive). shmDir: where segments are made (its device counts).
HostIdentity localHostIdentity(const std::string& override, const std::string& shmDir);

// The pieces: this boot of the kernel ("" without /proc), and a namespace of this process
// ("ipc", "pid": device and inode of its /proc/self/ns link, "?" when unreadable).
std::string bootId();
std::string namespaceId(const char* kind);

}  // namespace kumi
