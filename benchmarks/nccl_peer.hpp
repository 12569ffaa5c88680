// NCCL beside kumi in one kumi-bench run (--compare nccl): the same device buffers, sizes, ranks
// and stream. libnccl.so.2 is opened at run time, so kumi-bench neither links nor needs NCCL, and
// nothing of NCCL's is copied here beyond the few ABI values its public header fixes.
#pragma once

#include <kumi/kumi.h>

#include <memory>
#include <string>

namespace bench {

class NcclPeer {
 public:
  // A communicator of NCCL over the same ranks, bootstrapped through `comm` (rank 0's unique id
  // broadcast on host memory). Collective: every rank gets a peer or every rank gets null, with
  // the reason (NCCL missing on some rank, or its init refused, e.g. two ranks on one GPU) in
  // *why, agreed on through `comm`.
  static std::unique_ptr<NcclPeer> open(kumiComm_t comm, int rank, int nranks, std::string* why);
  ~NcclPeer();
  NcclPeer(const NcclPeer&) = delete;
  NcclPeer& operator=(const NcclPeer&) = delete;

  std::string version() const { return version_; }
  // One collective on device buffers, queued on `stream` as kumi's would be; counts as in kumi's
  // API (recvcount for reduce_scatter, sendcount for allgather, per-peer block for alltoall).
  // Throws std::runtime_error with NCCL's message on failure.
  void run(const std::string& coll, const void* send, void* recv, std::size_t count, kumiDataType_t type,
           kumiRedOp_t op, int root, void* stream);

  struct Api;  // the resolved entry points (nccl_peer.cpp)

 private:
  NcclPeer() = default;
  std::unique_ptr<Api> api_;
  void* comm_ = nullptr;
  int nranks_ = 0;
  std::string version_;
};

// NCCL's data type and op for kumi's; -1 where NCCL has none (kumi's are a subset today).
int ncclTypeOf(kumiDataType_t t);
int ncclOpOf(kumiRedOp_t op);

}  // namespace bench
