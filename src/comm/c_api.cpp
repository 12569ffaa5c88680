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
#include "core/types.hpp"

struct kumiComm {
  std::unique_ptr<kumi::Communicator> impl;
  std::atomic<int> calls{0};  // API calls inside impl now; abort frees impl only at zero
};

namespace {

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

kumi::Communicator& need(kumiComm_t comm) {
  if (comm == nullptr || !comm->impl) kumi::fail(kumiInvalidUsage, "communicator handle is NULL");
  return *comm->impl;
}

// Counts a call that uses the communicator, for kumiCommAbort from another thread.
class InCall {
 public:
  explicit InCall(kumiComm_t comm) : comm_(comm) {
    if (comm_) comm_->calls.fetch_add(1);
  }
  ~InCall() {
    if (comm_) comm_->calls.fetch_sub(1);
  }
  InCall(const InCall&) = delete;
  InCall& operator=(const InCall&) = delete;

 private:
  kumiComm_t comm_;
};

void needOut(const void* p, const char* what) {
  if (p == nullptr) kumi::fail(kumiInvalidArgument, what, " is NULL");
}

kumiResult_t wrap(std::unique_ptr<kumi::Communicator> impl, kumiComm_t* out) {
  auto handle = std::make_unique<kumiComm>();
  handle->impl = std::move(impl);
  *out = handle.release();  // owned by the caller until kumiCommDestroy
  return kumiSuccess;
}

kumiResult_t run(kumiComm_t comm, const kumi::CallArgs& args) {
  InCall in(comm);
  return guarded([&] { need(comm).execute(args); });
}

void needNoStream(kumiStream_t stream) {
  if (stream != nullptr)
    kumi::fail(kumiInvalidArgument, "a CUDA stream was given, but this kumi build has no CUDA support");
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

kumiResult_t kumiCommInitRank(kumiComm_t* comm, int worldSize, int rank, const char* storeAddr) {
  kumiConfig_t c = KUMI_CONFIG_INITIALIZER;
  if (worldSize < 0 || rank < 0) {
    lastError = kumi::cat("kumiCommInitRank: rank ", rank, " / world size ", worldSize, " must not be negative");
    return kumiInvalidArgument;
  }
  c.worldSize = worldSize;
  c.rank = rank;
  c.storeAddr = storeAddr;
  return kumiCommInitConfig(comm, &c);
}

kumiResult_t kumiCommSplit(kumiComm_t comm, int color, int key, kumiComm_t* newcomm) {
  InCall in(comm);
  std::unique_ptr<kumi::Communicator> impl;
  kumiResult_t r = guarded([&] {
    needOut(newcomm, "newcomm");
    *newcomm = nullptr;
    impl = need(comm).split(color, key);
  });
  if (r != kumiSuccess || !impl) return r;
  return wrap(std::move(impl), newcomm);
}

kumiResult_t kumiCommDestroy(kumiComm_t comm) {
  std::unique_ptr<kumiComm> owned(comm);
  return guarded([&] { owned.reset(); });
}

kumiResult_t kumiCommAbort(kumiComm_t comm) {
  std::unique_ptr<kumiComm> owned(comm);
  return guarded([&] {
    if (owned && owned->impl) {
      owned->impl->abort();  // running operations give up at once
      // Calls on other threads leave within moments of the abort; free only then.
      while (owned->calls.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    owned.reset();
  });
}

kumiResult_t kumiCommRank(kumiComm_t comm, int* rank) {
  return guarded([&] {
    needOut(rank, "rank");
    *rank = need(comm).rank();
  });
}

kumiResult_t kumiCommSize(kumiComm_t comm, int* size) {
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

#define KUMI_STREAM_CHECK(stream)                                      \
  do {                                                                 \
    if (stream != nullptr) {                                           \
      kumiResult_t sr = guarded([&] { needNoStream(stream); });        \
      if (sr != kumiSuccess) return sr;                                \
    }                                                                  \
  } while (0)

kumiResult_t kumiAllReduce(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, kumiRedOp_t op,
                           kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::AllReduce, sendbuf, recvbuf, count, datatype, op, 0});
}

kumiResult_t kumiReduce(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, kumiRedOp_t op,
                        int root, kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::Reduce, sendbuf, recvbuf, count, datatype, op, root});
}

kumiResult_t kumiBroadcast(const void* sendbuf, void* recvbuf, size_t count, kumiDataType_t datatype, int root,
                           kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::Broadcast, sendbuf, recvbuf, count, datatype, kumiSum, root});
}

kumiResult_t kumiReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount, kumiDataType_t datatype,
                               kumiRedOp_t op, kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::ReduceScatter, sendbuf, recvbuf, recvcount, datatype, op, 0});
}

kumiResult_t kumiAllGather(const void* sendbuf, void* recvbuf, size_t sendcount, kumiDataType_t datatype,
                           kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::AllGather, sendbuf, recvbuf, sendcount, datatype, kumiSum, 0});
}

kumiResult_t kumiBarrier(kumiComm_t comm, kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::Barrier, nullptr, nullptr, 0, kumiUint8, kumiSum, 0});
}

kumiResult_t kumiSend(const void* sendbuf, size_t count, kumiDataType_t datatype, int peer, kumiComm_t comm,
                      kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::Send, sendbuf, nullptr, count, datatype, kumiSum, peer});
}

kumiResult_t kumiRecv(void* recvbuf, size_t count, kumiDataType_t datatype, int peer, kumiComm_t comm,
                      kumiStream_t stream) {
  KUMI_STREAM_CHECK(stream);
  return run(comm, {kumi::Collective::Recv, nullptr, recvbuf, count, datatype, kumiSum, peer});
}

size_t kumiTypeSize(kumiDataType_t datatype) { return kumi::typeSize(datatype); }

}  // extern "C"
