#include "nccl_peer.hpp"

#include <dlfcn.h>

#include <cstring>
#include <stdexcept>

namespace bench {
namespace {

// From nccl.h's public ABI: result 0 is success, the unique id is 128 opaque bytes, the enums
// below have kept their values since NCCL 2.0 (bfloat16 since 2.10).
using NcclResult = int;
struct NcclUniqueId {
  char internal[128];
};
using NcclComm = void*;

}  // namespace

struct NcclPeer::Api {
  void* lib = nullptr;
  NcclResult (*getUniqueId)(NcclUniqueId*) = nullptr;
  NcclResult (*commInitRank)(NcclComm*, int, NcclUniqueId, int) = nullptr;
  NcclResult (*commDestroy)(NcclComm) = nullptr;
  NcclResult (*getVersion)(int*) = nullptr;
  const char* (*errorString)(NcclResult) = nullptr;
  NcclResult (*allReduce)(const void*, void*, std::size_t, int, int, NcclComm, void*) = nullptr;
  NcclResult (*reduceScatter)(const void*, void*, std::size_t, int, int, NcclComm, void*) = nullptr;
  NcclResult (*allGather)(const void*, void*, std::size_t, int, NcclComm, void*) = nullptr;
  NcclResult (*broadcast)(const void*, void*, std::size_t, int, int, NcclComm, void*) = nullptr;
  NcclResult (*reduce)(const void*, void*, std::size_t, int, int, int, NcclComm, void*) = nullptr;
  NcclResult (*send)(const void*, std::size_t, int, int, NcclComm, void*) = nullptr;
  NcclResult (*recv)(void*, std::size_t, int, int, NcclComm, void*) = nullptr;
  NcclResult (*groupStart)() = nullptr;
  NcclResult (*groupEnd)() = nullptr;
  ~Api() {
    if (lib) dlclose(lib);
  }
  // Opens NCCL; empty on success, else why not.
  std::string load() {
    lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return std::string("libnccl.so.2 not found (") + dlerror() + ")";
    bool ok = true;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      ok = ok && fn != nullptr;
    };
    get(getUniqueId, "ncclGetUniqueId");
    get(commInitRank, "ncclCommInitRank");
    get(commDestroy, "ncclCommDestroy");
    get(getVersion, "ncclGetVersion");
    get(errorString, "ncclGetErrorString");
    get(allReduce, "ncclAllReduce");
    get(reduceScatter, "ncclReduceScatter");
    get(allGather, "ncclAllGather");
    get(broadcast, "ncclBroadcast");
    get(reduce, "ncclReduce");
    get(send, "ncclSend");
    get(recv, "ncclRecv");
    get(groupStart, "ncclGroupStart");
    get(groupEnd, "ncclGroupEnd");
    return ok ? "" : "libnccl.so.2 lacks an entry point kumi-bench calls (NCCL older than 2.7?)";
  }
  std::string message(NcclResult r) const { return errorString ? errorString(r) : "error " + std::to_string(r); }
};

int ncclTypeOf(kumiDataType_t t) {
  switch (t) {
    case kumiInt8: return 0;
    case kumiUint8: return 1;
    case kumiInt32: return 2;
    case kumiUint32: return 3;
    case kumiInt64: return 4;
    case kumiUint64: return 5;
    case kumiFloat16: return 6;
    case kumiFloat32: return 7;
    case kumiFloat64: return 8;
    case kumiBfloat16: return 9;
    default: return -1;
  }
}

int ncclOpOf(kumiRedOp_t op) {
  switch (op) {  // NCCL orders max before min
    case kumiSum: return 0;
    case kumiProd: return 1;
    case kumiMax: return 2;
    case kumiMin: return 3;
    case kumiAvg: return 4;
    default: return -1;
  }
}

std::unique_ptr<NcclPeer> NcclPeer::open(kumiComm_t comm, int rank, int nranks, std::string* why) {
  std::unique_ptr<NcclPeer> peer(new NcclPeer());  // private constructor: make_unique cannot reach it
  peer->api_ = std::make_unique<Api>();
  peer->nranks_ = nranks;
  std::string reason = peer->api_->load();
  // Every rank learns whether every rank has NCCL, then rank 0's id reaches all.
  auto everyone = [&](bool mine) {
    int ok = mine ? 1 : 0, all = 0;
    if (kumiAllReduce(&ok, &all, 1, kumiInt32, kumiMin, comm, nullptr) != kumiSuccess)
      throw std::runtime_error(std::string("kumi allreduce for the NCCL bootstrap: ") + kumiGetLastError());
    return all == 1;
  };
  if (!everyone(reason.empty())) {
    if (why) *why = reason.empty() ? "another rank has no usable NCCL" : reason;
    return nullptr;
  }
  NcclUniqueId id{};
  NcclResult r = rank == 0 ? peer->api_->getUniqueId(&id) : 0;
  if (!everyone(r == 0)) {
    if (why) *why = r ? "ncclGetUniqueId: " + peer->api_->message(r) : "ncclGetUniqueId failed on rank 0";
    return nullptr;
  }
  if (kumiBroadcast(&id, &id, sizeof id, kumiUint8, 0, comm, nullptr) != kumiSuccess)
    throw std::runtime_error(std::string("kumi broadcast of the NCCL id: ") + kumiGetLastError());
  NcclComm c = nullptr;
  r = peer->api_->commInitRank(&c, nranks, id, rank);
  if (!everyone(r == 0)) {
    // NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), for one.
    if (r == 0) peer->api_->commDestroy(c);
    if (why) *why = r ? "ncclCommInitRank: " + peer->api_->message(r) : "ncclCommInitRank failed on another rank";
    return nullptr;
  }
  peer->comm_ = c;
  int v = 0;
  if (peer->api_->getVersion(&v) == 0)
    peer->version_ = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  return peer;
}

NcclPeer::~NcclPeer() {
  if (comm_ && api_) api_->commDestroy(comm_);
}

void NcclPeer::run(const std::string& coll, const void* send, void* recv, std::size_t count, kumiDataType_t type,
                   kumiRedOp_t op, int root, void* stream) {
  const int t = ncclTypeOf(type), o = ncclOpOf(op);
  if (t < 0 || o < 0) throw std::runtime_error("NCCL has no equivalent of this type or op");
  const Api& a = *api_;
  NcclResult r = 0;
  if (coll == "allreduce") r = a.allReduce(send, recv, count, t, o, comm_, stream);
  else if (coll == "reduce_scatter") r = a.reduceScatter(send, recv, count, t, o, comm_, stream);
  else if (coll == "allgather") r = a.allGather(send, recv, count, t, comm_, stream);
  else if (coll == "broadcast") r = a.broadcast(send, recv, count, t, root, comm_, stream);
  else if (coll == "reduce") r = a.reduce(send, recv, count, t, o, root, comm_, stream);
  else if (coll == "alltoall") {
    // NCCL has no all-to-all call: grouped sends and receives, as nccl-tests does it.
    const std::size_t bytes = count * kumiTypeSize(type);
    r = a.groupStart();
    for (int p = 0; p < nranks_ && r == 0; ++p) {
      r = a.send(static_cast<const char*>(send) + static_cast<std::size_t>(p) * bytes, count, t, p, comm_, stream);
      if (r == 0) r = a.recv(static_cast<char*>(recv) + static_cast<std::size_t>(p) * bytes, count, t, p, comm_, stream);
    }
    const NcclResult end = a.groupEnd();
    if (r == 0) r = end;
  } else {
    throw std::runtime_error("NCCL comparison: unknown collective " + coll);
  }
  if (r != 0) throw std::runtime_error("nccl " + coll + ": " + a.message(r));
}

}  // namespace bench
