// The C API: argument checks on handles, exceptions turned into result codes, and the message
// kept per thread for kumiGetLastError().
#include <kumi/kumi.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>
#include <string>

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "core/types.hpp"
#include "rendezvous/unique_id.hpp"

struct kumiComm {
  std::unique_ptr<kumi::Communicator> impl;
  std::atomic<int> calls{0};              // API calls inside impl now; abort frees impl only at zero
  std::atomic<bool> inCollective{false};  // a collective or split is running on some thread

  kumiComm() = default;
  kumiComm(const kumiComm&) = delete;
  kumiComm& operator=(const kumiComm&) = delete;
  // The handle table outlives main(): a communicator the program never destroyed is left to the
  // operating system, as before, rather than torn down during static destruction, when the
  // services it would touch on the way out (store, logging) may already be gone.
  ~kumiComm() { static_cast<void>(impl.release()); }
};

namespace {

using HandleState = kumi::HandleTable::State;

thread_local std::string lastError;

template <class F>
kumiResult_t guarded(F&& f) {
  try {
    lastError.clear();
    f();
    return kumiSuccess;
  } catch (const kumi::Error& e) {
    lastError = e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    lastError = "out of memory";
    return kumiSystemError;
  } catch (const std::exception& e) {
    lastError = kumi::cat("internal error: ", e.what());
    return kumiInternalError;
  }
}

kumi::HandleTable& handles() { return kumi::Registry::instance().handles; }

// Why a handle that is not live cannot be used. Only its address is printed: it is not read.
[[noreturn]] void failNotLive(kumiComm_t comm, HandleState state) {
  if (comm == nullptr) kumi::fail(kumiInvalidUsage, "communicator handle is NULL");
  if (state == HandleState::Retired)
    kumi::fail(kumiInvalidUsage, "communicator handle ", static_cast<const void*>(comm),
               " was destroyed (kumiCommDestroy or kumiCommAbort) and may not be used again");
  kumi::fail(kumiInvalidUsage, "communicator handle ", static_cast<const void*>(comm),
             " is not a communicator (kumiCommInit* and kumiCommSplit make them)");
}

// The communicator behind a live handle. The handle is looked up by address before anything
// reads it, so a destroyed or made-up one is refused; call it within an InCall, which keeps the
// handle from being destroyed while the call uses it.
kumi::Communicator& need(kumiComm_t comm) {
  const HandleState state = comm == nullptr ? HandleState::Unknown : handles().state(comm);
  if (state != HandleState::Live) failNotLive(comm, state);
  return *comm->impl;
}

// Counts a call that uses the communicator, for kumiCommDestroy (which refuses while any runs)
// and kumiCommAbort (which frees the communicator only once they have left). The count is taken
// under the handle table's lock, so no call can slip in after destroy or abort retired the
// handle; a handle that is not live is not touched (need() then says why).
class InCall {
 public:
  explicit InCall(kumiComm_t comm) {
    if (comm != nullptr) handles().ifLive(comm, [&] {
        comm->calls.fetch_add(1);
        comm_ = comm;
      });
  }
  ~InCall() {
    if (comm_) comm_->calls.fetch_sub(1);
  }
  InCall(const InCall&) = delete;
  InCall& operator=(const InCall&) = delete;

 private:
  kumiComm_t comm_ = nullptr;
};

// Held while a collective or split runs. A second one from another thread is refused at once:
// serialising the two would let each rank pair its calls in a different order, so that ranks
// exchange data of different calls (wrong results or a mismatch error far from the cause).
class OneCollective {
 public:
  explicit OneCollective(kumiComm_t comm) : comm_(comm) {
    bool idle = false;
    if (!comm_->inCollective.compare_exchange_strong(idle, true))
      kumi::fail(kumiInvalidUsage, "communicator handle ", static_cast<const void*>(comm),
                 " is already running a collective on another thread (a communicator may be used"
                 " from one thread at a time)");
  }
  ~OneCollective() { comm_->inCollective.store(false); }
  OneCollective(const OneCollective&) = delete;
  OneCollective& operator=(const OneCollective&) = delete;

 private:
  kumiComm_t comm_;
};

void needOut(const void* p, const char* what) {
  if (p == nullptr) kumi::fail(kumiInvalidArgument, what, " is NULL");
}

// A handle for a new communicator, live in the handle table from now on (the table holds its
// memory; the caller holds it until kumiCommDestroy or kumiCommAbort).
kumiResult_t wrap(std::unique_ptr<kumi::Communicator> impl, kumiComm_t* out) {
  return guarded([&] {
    auto handle = std::make_shared<kumiComm>();
    handle->impl = std::move(impl);
    handles().adopt(handle);
    *out = handle.get();
  });
}

kumiResult_t run(kumiComm_t comm, const kumi::CallArgs& args, kumiStream_t stream) {
  InCall in(comm);
  return guarded([&] {
    kumi::Communicator& c = need(comm);
    OneCollective one(comm);
    c.execute(args, stream);
  });
}

}  // namespace

extern "C" {

kumiResult_t kumiGetVersion(int* version) {
  return guarded([&] {
    needOut(version, "version");
    *version = KUMI_VERSION_CODE;
  });
}

const char* kumiGetErrorString(kumiResult_t result) {
  switch (result) {
    case kumiSuccess: return "success";
    case kumiInvalidArgument: return "invalid argument";
    case kumiInvalidUsage: return "invalid usage";
    case kumiSystemError: return "system error";
    case kumiTimeout: return "timeout";
    case kumiRemoteError: return "remote error (a peer failed or disagreed)";
    case kumiAborted: return "aborted";
    case kumiInternalError: return "internal error";
    default: return "unknown result code";
  }
}

const char* kumiGetLastError(void) { return lastError.c_str(); }

kumiResult_t kumiCommInitConfig(kumiComm_t* comm, const kumiConfig_t* config) {
  std::unique_ptr<kumi::Communicator> impl;
  kumiResult_t r = guarded([&] {
    needOut(comm, "comm");
    *comm = nullptr;
    impl = kumi::Communicator::create(kumi::Config::resolve(config));
  });
  return r == kumiSuccess ? wrap(std::move(impl), comm) : r;
}

kumiResult_t kumiCommInitFromEnv(kumiComm_t* comm) { return kumiCommInitConfig(comm, nullptr); }

namespace {
// The inits that name the rank explicitly: rank, size and store from the caller.
kumiResult_t initWithRank(const char* who, kumiComm_t* comm, int worldSize, int rank, const char* store,
                          const char* jobId, int storeServe) {
  if (worldSize < 0 || rank < 0) {
    lastError = kumi::cat(who, ": rank ", rank, " / world size ", worldSize, " must not be negative");
    return kumiInvalidArgument;
  }
  kumiConfig_t c = KUMI_CONFIG_INITIALIZER;
  c.worldSize = worldSize;
  c.rank = rank;
  c.storeAddr = store;
  c.jobId = jobId;
  c.storeServe = storeServe;
  return kumiCommInitConfig(comm, &c);
}
}  // namespace

kumiResult_t kumiGetUniqueId(kumiUniqueId* uniqueId) {
  kumiResult_t r = guarded([&] {
    needOut(uniqueId, "uniqueId");
    *uniqueId = kumi::makeUniqueId();
  });
  if (r != kumiSuccess && uniqueId) *uniqueId = kumi::failedUniqueId(lastError);
  return r;
}

kumiResult_t kumiCommInitRankWithId(kumiComm_t* comm, int worldSize, kumiUniqueId uniqueId, int rank) {
  std::string store, job;
  kumiResult_t r = guarded([&] {
    needOut(comm, "comm");
    *comm = nullptr;
    kumi::readUniqueId(uniqueId, &store, &job);
  });
  if (r != kumiSuccess) return r;
  // kumiGetUniqueId's process serves the store already: every rank only connects.
  return initWithRank("kumiCommInitRankWithId", comm, worldSize, rank, store.c_str(), job.c_str(), 0);
}

kumiResult_t kumiCommInitRank(kumiComm_t* comm, int worldSize, int rank, const char* storeAddr) {
  return initWithRank("kumiCommInitRank", comm, worldSize, rank, storeAddr, nullptr, -1);
}

kumiResult_t kumiCommSplit(kumiComm_t comm, int color, int key, kumiComm_t* newcomm) {
  InCall in(comm);
  std::unique_ptr<kumi::Communicator> impl;
  kumiResult_t r = guarded([&] {
    needOut(newcomm, "newcomm");
    *newcomm = nullptr;
    kumi::Communicator& c = need(comm);
    OneCollective one(comm);
    impl = c.split(color, key);
  });
  if (r != kumiSuccess || !impl) return r;
  return wrap(std::move(impl), newcomm);
}

kumiResult_t kumiCommDestroy(kumiComm_t comm) {
  return guarded([&] {
    if (comm == nullptr) return;  // accepted, as free(NULL) is
    int busy = 0;
    const HandleState before = handles().retireIf(comm, [&] {
      busy = comm->calls.load();
      return busy == 0;
    });
    if (before != HandleState::Live) failNotLive(comm, before);
    if (busy > 0)
      kumi::fail(kumiInvalidUsage, "kumiCommDestroy: communicator handle ", static_cast<const void*>(comm), " is in use by ",
                 busy, " call(s) on other threads; destroy it once they have returned, or stop them with kumiCommAbort");
    comm->impl.reset();  // retired: no call can reach it any more
  });
}

kumiResult_t kumiCommAbort(kumiComm_t comm) {
  return guarded([&] {
    if (comm == nullptr) return;  // accepted, as for kumiCommDestroy
    // Retired first, whatever runs: from here on no call can start with the handle, and a
    // second abort or a destroy racing with this one is refused instead of freeing it twice.
    const HandleState before = handles().retireIf(comm, [] { return true; });
    if (before != HandleState::Live) failNotLive(comm, before);
    // The communicator is freed once calls on other threads have left, which they do within
    // moments of the abort; also if the abort itself fails, since nobody else can free it now.
    struct FreeWhenIdle {
      kumiComm_t c;
      ~FreeWhenIdle() {
        while (c->calls.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        c->impl.reset();
      }
    } freeWhenIdle{comm};
    comm->impl->abort();  // running operations give up at once
  });
}

kumiResult_t kumiCommRegister(kumiComm_t comm, void* buff, size_t bytes, void** handle) {
  InCall in(comm);
  return guarded([&] {
    needOut(handle, "handle");
    *handle = reinterpret_cast<void*>(static_cast<std::uintptr_t>(need(comm).registerBuffer(buff, bytes)));
  });
}

kumiResult_t kumiCommDeregister(kumiComm_t comm, void* handle) {
  InCall in(comm);
  return guarded([&] { need(comm).deregisterBuffer(reinterpret_cast<std::uintptr_t>(handle)); });
}

kumiResult_t kumiCommRank(kumiComm_t comm, int* rank) {
  InCall in(comm);
  return guarded([&] {
    needOut(rank, "rank");
    *rank = need(comm).rank();
  });
}

kumiResult_t kumiCommSize(kumiComm_t comm, int* size) {
  InCall in(comm);
  return guarded([&] {
    needOut(size, "size");
    *size = need(comm).size();
  });
}

kumiResult_t kumiCommHost(kumiComm_t comm, int rank, int* host) {
  InCall in(comm);
  return guarded([&] {
    needOut(host, "host");
    const kumi::Communicator& c = need(comm);
    if (rank < 0 || rank >= c.size())
      kumi::fail(kumiInvalidArgument, "kumiCommHost: rank ", rank, " is outside the communicator of size ", c.size(),
                 " (valid ranks: 0..", c.size() - 1, ")");
    *host = c.world().hostOf(rank);
  });
}

kumiResult_t kumiCommGetAlgorithm(kumiComm_t comm, const char** name) {
  InCall in(comm);
  return guarded([&] {
    needOut(name, "name");
    *name = need(comm).lastAlgorithm();
  });
}

kumiResult_t kumiCommGetAsyncError(kumiComm_t comm, kumiResult_t* asyncError) {
  InCall in(comm);
  std::string message;
  kumiResult_t found = kumiSuccess;
  const kumiResult_t r = guarded([&] {
    needOut(asyncError, "asyncError");
    found = need(comm).asyncError(&message);
    *asyncError = found;
  });
  if (r == kumiSuccess && found != kumiSuccess) lastError = message;
  return r;
}

kumiResult_t kumiCommDumpFlightRecorder(kumiComm_t comm, const char* path) {
  // Not an operation: it must not wait for one that hangs.
  InCall in(comm);
  return guarded([&] {
    const std::string file = need(comm).dumpFlightRecorder(path ? path : "", "requested (kumiCommDumpFlightRecorder)");
    if (!file.empty()) KUMI_INFO("flight recorder written to ", file);
  });
}

kumiResult_t kumiAllReduce(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, kumiRedOp_t op,
                           kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::AllReduce, sendbuf, recvbuf, count, datatype, op, 0}, stream);
}

kumiResult_t kumiReduce(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, kumiRedOp_t op,
                        int root, kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::Reduce, sendbuf, recvbuf, count, datatype, op, root}, stream);
}

kumiResult_t kumiBroadcast(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, int root,
                           kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::Broadcast, sendbuf, recvbuf, count, datatype, kumiSum, root}, stream);
}

kumiResult_t kumiReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount, kumiDataType_t datatype,
                               kumiRedOp_t op, kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::ReduceScatter, sendbuf, recvbuf, recvcount, datatype, op, 0}, stream);
}

kumiResult_t kumiAllGather(const void* sendbuf, void* recvbuf, size_t sendcount, kumiDataType_t datatype,
                           kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::AllGather, sendbuf, recvbuf, sendcount, datatype, kumiSum, 0}, stream);
}

kumiResult_t kumiAllToAll(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, kumiComm_t comm,
                          kumiStream_t stream) {
  return run(comm, {kumi::Collective::AllToAll, sendbuf, recvbuf, count, datatype, kumiSum, 0}, stream);
}

kumiResult_t kumiBarrier(kumiComm_t comm, kumiStream_t stream) {
  return run(comm, {kumi::Collective::Barrier, nullptr, nullptr, 0, kumiUint8, kumiSum, 0}, stream);
}

kumiResult_t kumiSend(const void* sendbuf, size_t count, kumiDataType_t datatype, int peer, kumiComm_t comm,
                      kumiStream_t stream) {
  return run(comm, {kumi::Collective::Send, sendbuf, nullptr, count, datatype, kumiSum, peer}, stream);
}

kumiResult_t kumiRecv(void* recvbuf, size_t count, kumiDataType_t datatype, int peer, kumiComm_t comm,
                      kumiStream_t stream) {
  return run(comm, {kumi::Collective::Recv, nullptr, recvbuf, count, datatype, kumiSum, peer}, stream);
}

size_t kumiTypeSize(kumiDataType_t datatype) { return kumi::typeSize(datatype); }

}  // extern "C"
