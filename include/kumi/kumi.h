/*
 * kumi: collective communication for distributed training. Public C API.
 *
 * Conventions (NCCL-like, so that porting code is mechanical):
 *  - Every call returns a kumiResult_t; on failure kumiGetLastError() returns a message that
 *    names the problem (operation, ranks, peers, sizes) for the calling thread.
 *  - Counts are in elements of the given data type, not bytes.
 *  - A send buffer equal to the receive buffer (at the right offset for allgather and
 *    reduce-scatter) means "in place" (all-to-all has no in-place form).
 *  - Host buffers: a collective blocks and returns when the caller's buffers may be reused. Pass
 *    NULL as the stream; a CUDA stream given with host buffers is first waited for (its earlier
 *    work may be filling them). Without a usable GPU a non-NULL stream is refused.
 *  - Device buffers (cudaMalloc; in a CUDA build, on a machine with a GPU): as NCCL, the call is
 *    queued on the stream and returns at once. Its work starts after the work enqueued on the
 *    stream before it, and work enqueued on the stream after it waits until it is over; the
 *    stream NULL is CUDA's legacy default stream. One communicator works on one GPU, the one
 *    current at its first device call. A rank's two buffers must be of one kind (device or
 *    host; ranks may differ); managed memory is refused. Arguments are checked at the call; a
 *    failure found later (a peer lost, a timeout) still releases the stream, leaves the
 *    receive buffer undefined and the communicator failed: kumiCommGetAsyncError reports it,
 *    and later calls return it. Calls on host buffers, splits and kumiCommDestroy wait for the
 *    calls queued before them.
 *  - A communicator may be used from one thread at a time; different communicators may be
 *    used concurrently from different threads. kumiCommAbort may be called from any thread.
 *    A collective or split started while another thread runs one on the same communicator
 *    fails at once with kumiInvalidUsage (and leaves the running one alone).
 *  - Handles are checked before use: NULL, a destroyed (or aborted) handle, or an address that
 *    is not a communicator gives kumiInvalidUsage, never a use of freed memory. kumi keeps
 *    a few dozen bytes per communicator ever created so that a handle's address is never
 *    reused and a stale handle cannot be taken for a newer communicator.
 */
#ifndef KUMI_KUMI_H_
#define KUMI_KUMI_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define KUMI_API
#else
#define KUMI_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define KUMI_VERSION_MAJOR 0
#define KUMI_VERSION_MINOR 1
#define KUMI_VERSION_PATCH 0
/* major*10000 + minor*100 + patch */
#define KUMI_VERSION_CODE (KUMI_VERSION_MAJOR * 10000 + KUMI_VERSION_MINOR * 100 + KUMI_VERSION_PATCH)

typedef enum {
  kumiSuccess = 0,
  kumiInvalidArgument = 1, /* bad count, buffer, dtype, op, root, rank, ... */
  kumiInvalidUsage = 2,    /* API misuse: wrong order, destroyed communicator, ... */
  kumiSystemError = 3,     /* an operating-system call failed (socket, memory, ...) */
  kumiTimeout = 4,         /* a deadline (KUMI_TIMEOUT) expired */
  kumiRemoteError = 5,     /* a peer failed, closed its connection, or disagreed */
  kumiAborted = 6,         /* the communicator was aborted */
  kumiInternalError = 7,   /* a bug in kumi: please report it */
  kumiNumResults = 8
} kumiResult_t;

typedef enum {
  kumiInt8 = 0,
  kumiUint8 = 1,
  kumiInt32 = 2,
  kumiUint32 = 3,
  kumiInt64 = 4,
  kumiUint64 = 5,
  kumiFloat16 = 6,
  kumiBfloat16 = 7,
  kumiFloat32 = 8,
  kumiFloat64 = 9,
  kumiNumTypes = 10
} kumiDataType_t;

typedef enum {
  kumiSum = 0,
  kumiProd = 1,
  kumiMin = 2,
  kumiMax = 3,
  kumiAvg = 4, /* sum divided by the number of ranks; integer types divide with truncation */
  kumiNumOps = 5
} kumiRedOp_t;

/* Opaque handles. */
typedef struct kumiComm* kumiComm_t;
typedef void* kumiStream_t; /* a cudaStream_t when CUDA support is built; NULL otherwise */

/* Explicit configuration; fields left 0/NULL take the KUMI_* environment value or the default.
 * Initialise with KUMI_CONFIG_INITIALIZER so that fields added later keep their defaults. */
typedef struct {
  size_t structSize;          /* sizeof(kumiConfig_t), for forward compatibility */
  int rank;                   /* this process's rank, 0 <= rank < worldSize */
  int worldSize;              /* number of ranks */
  const char* storeAddr;      /* "host:port" of the rendezvous store (KUMI_STORE) */
  int storeServe;             /* 1: this process serves the store, 0: it only connects,
                                 -1: rank 0 serves (default; KUMI_STORE_SERVE) */
  const char* jobId;          /* job identity carried by every connection (KUMI_JOB_ID) */
  int generation;             /* restart generation; a connection from another is refused */
  double timeoutSeconds;      /* deadline of every blocking call (KUMI_TIMEOUT) */
  const char* socketIfname;   /* interface selection, NCCL syntax (KUMI_SOCKET_IFNAME) */
} kumiConfig_t;

#define KUMI_CONFIG_INITIALIZER {sizeof(kumiConfig_t), -1, -1, NULL, -1, NULL, -1, 0.0, NULL}

/* Version as KUMI_VERSION_CODE of the library actually loaded. */
KUMI_API kumiResult_t kumiGetVersion(int* version);

/* Text for a result code (static storage). */
KUMI_API const char* kumiGetErrorString(kumiResult_t result);

/* The message of the last failed call on this thread ("" if none). Valid until the next call. */
KUMI_API const char* kumiGetLastError(void);

/* Creates a communicator from the environment: KUMI_RANK, KUMI_WORLD_SIZE, KUMI_STORE (as set
 * by kumirun), plus the optional KUMI_* variables. Collective over all ranks. */
KUMI_API kumiResult_t kumiCommInitFromEnv(kumiComm_t* comm);

/* Creates a communicator with explicit rank, size and store address ("host:port"); other
 * settings from the environment. Rank 0 serves the store unless KUMI_STORE_SERVE=0. */
KUMI_API kumiResult_t kumiCommInitRank(kumiComm_t* comm, int worldSize, int rank,
                                       const char* storeAddr);

/* Creates a communicator from a configuration struct. */
KUMI_API kumiResult_t kumiCommInitConfig(kumiComm_t* comm, const kumiConfig_t* config);

/* NCCL's pattern, for jobs that already have a way to pass bytes between ranks (MPI, a training
 * framework's own store): one process calls kumiGetUniqueId, the bytes reach every rank, and each
 * calls kumiCommInitRankWithId. The id names a rendezvous store that kumiGetUniqueId starts in the
 * calling process (on the interface KUMI_SOCKET_IFNAME selects, at a free port; it lives as long
 * as the process, which must stay up until init completes) and a fresh job id. On failure the id
 * carries the error, so that the ranks given it fail with the same message instead of waiting.
 * include/kumi/kumi_mpi.h builds kumiCommInitFromMPI from these two. */
#define KUMI_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[KUMI_UNIQUE_ID_BYTES];
} kumiUniqueId;

KUMI_API kumiResult_t kumiGetUniqueId(kumiUniqueId* uniqueId);
KUMI_API kumiResult_t kumiCommInitRankWithId(kumiComm_t* comm, int worldSize, kumiUniqueId uniqueId, int rank);

/* Splits a communicator: ranks with the same color form a new communicator, ordered by key
 * (ties by old rank). color < 0 (KUMI_SPLIT_NOCOLOR) yields *newcomm = NULL. Collective. */
#define KUMI_SPLIT_NOCOLOR (-1)
KUMI_API kumiResult_t kumiCommSplit(kumiComm_t comm, int color, int key, kumiComm_t* newcomm);

/* Releases a communicator after its operations have finished. NULL is accepted (kumiSuccess).
 * A handle already destroyed or aborted gives kumiInvalidUsage (nothing is released twice).
 * While a call on another thread is inside the communicator, nothing is released and the result
 * is kumiInvalidUsage: destroy it after that call returns, or stop the call with kumiCommAbort. */
KUMI_API kumiResult_t kumiCommDestroy(kumiComm_t comm);

/* Aborts a communicator from any thread: operations in progress (a split included) fail with
 * kumiAborted, peers see the connections close, resources are released once those calls have
 * returned. The handle is invalid afterwards: calls that start with it, kumiCommDestroy and a
 * second kumiCommAbort included, give kumiInvalidUsage. NULL is accepted (kumiSuccess). It cannot
 * interrupt kumiCommInit*, which has no handle until it returns; it can interrupt kumiCommSplit
 * through the parent's handle. */
KUMI_API kumiResult_t kumiCommAbort(kumiComm_t comm);

/* Registers [buff, buff + bytes) for zero-copy transfers, as ncclCommRegister does: over RDMA,
 * parts of large messages sent from a registered buffer go from the buffer itself instead of
 * being copied into the transport's staging ring. Optional: unregistered buffers always work.
 * The registration holds the buffer's pages; call kumiCommDeregister before freeing the buffer
 * (a registration outliving its buffer keeps the freed pages pinned). Where the kernel allows
 * userfaultfd, a registered buffer that is unmapped, moved or emptied (free of a large block,
 * munmap, mremap, MADV_DONTNEED) without it is noticed and its registration no longer used, so a
 * new buffer at the same addresses is never sent from the old pages; elsewhere that is the
 * caller's duty, as with NCCL (KUMI_DEBUG=INFO says which applies). Overlapping registrations are allowed; each needs its own
 * deregistration. Where no transport of the communicator can use it, registering only records
 * the buffer; so it is for device buffers, which collectives send through kumi's own device
 * memory (read by the NIC itself where GPUDirect RDMA is chosen, see docs/RDMA.md). *handle is
 * valid until kumiCommDeregister or the communicator's destruction. */
KUMI_API kumiResult_t kumiCommRegister(kumiComm_t comm, void* buff, size_t bytes, void** handle);
KUMI_API kumiResult_t kumiCommDeregister(kumiComm_t comm, void* handle);

KUMI_API kumiResult_t kumiCommRank(kumiComm_t comm, int* rank);
KUMI_API kumiResult_t kumiCommSize(kumiComm_t comm, int* size);

/* The host of a rank of this communicator: 0 .. hosts-1, hosts numbered in order of their lowest
 * rank (ranks with the same host id share a host; see KUMI_HOSTID). Every rank sees the same map.
 * kumiInvalidArgument if rank is not in [0, size). */
KUMI_API kumiResult_t kumiCommHost(kumiComm_t comm, int rank, int* host);

/* The name of the algorithm this communicator's most recent operation ran ("ring",
 * "recursive_doubling", "hierarchical", ...; "" before any; a barrier, send or recv counts too),
 * as the planner chose it after KUMI_ALGO and its fallbacks: what ran, not what was asked for,
 * so that a benchmark can tell when a forced algorithm could not serve. Static storage. For calls
 * on device buffers: of the last one that has run (synchronize the stream first). */
KUMI_API kumiResult_t kumiCommGetAlgorithm(kumiComm_t comm, const char** name);

/* The failure that left the communicator failed (notably a call on device buffers that failed
 * after it had returned; see the conventions above), or kumiSuccess; when there was one,
 * kumiGetLastError() returns its message. Does not wait for queued calls: synchronize the
 * stream first to learn about them. */
KUMI_API kumiResult_t kumiCommGetAsyncError(kumiComm_t comm, kumiResult_t* asyncError);

/* recvbuf[i] = op over ranks of sendbuf[i], on every rank. */
KUMI_API kumiResult_t kumiAllReduce(const void* sendbuf, void* recvbuf, size_t count,
                                    kumiDataType_t datatype, kumiRedOp_t op, kumiComm_t comm,
                                    kumiStream_t stream);

/* Reduces count elements into recvbuf on root only. */
KUMI_API kumiResult_t kumiReduce(const void* sendbuf, void* recvbuf, size_t count,
                                 kumiDataType_t datatype, kumiRedOp_t op, int root,
                                 kumiComm_t comm, kumiStream_t stream);

/* Copies count elements from root's sendbuf into every rank's recvbuf. */
KUMI_API kumiResult_t kumiBroadcast(const void* sendbuf, void* recvbuf, size_t count,
                                    kumiDataType_t datatype, int root, kumiComm_t comm,
                                    kumiStream_t stream);

/* sendbuf holds size*recvcount elements; rank r receives the reduction of block r.
 * In place when recvbuf points at this rank's block of sendbuf (sendbuf + rank*recvcount). */
KUMI_API kumiResult_t kumiReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount,
                                        kumiDataType_t datatype, kumiRedOp_t op,
                                        kumiComm_t comm, kumiStream_t stream);

/* recvbuf (size*sendcount elements) receives every rank's sendbuf, in rank order.
 * In place when sendbuf points at this rank's block of recvbuf. */
KUMI_API kumiResult_t kumiAllGather(const void* sendbuf, void* recvbuf, size_t sendcount,
                                    kumiDataType_t datatype, kumiComm_t comm,
                                    kumiStream_t stream);

/* sendbuf and recvbuf hold size*count elements each: block j of sendbuf (elements
 * j*count .. (j+1)*count-1) goes to rank j, and recvbuf's block j receives block r (this rank)
 * of rank j's sendbuf, as in ncclAlltoAll and MPI_Alltoall. Not in place: buffers that overlap,
 * sendbuf == recvbuf included, give kumiInvalidArgument. */
KUMI_API kumiResult_t kumiAllToAll(const void* sendbuf, void* recvbuf, size_t count,
                                   kumiDataType_t datatype, kumiComm_t comm, kumiStream_t stream);

/* Returns once every rank has entered the barrier. */
KUMI_API kumiResult_t kumiBarrier(kumiComm_t comm, kumiStream_t stream);

/* Point-to-point: blocking until the buffer may be reused. A send must be matched by a recv of
 * the same count and type on the peer; messages between two ranks arrive in order. */
KUMI_API kumiResult_t kumiSend(const void* sendbuf, size_t count, kumiDataType_t datatype,
                               int peer, kumiComm_t comm, kumiStream_t stream);
KUMI_API kumiResult_t kumiRecv(void* recvbuf, size_t count, kumiDataType_t datatype, int peer,
                               kumiComm_t comm, kumiStream_t stream);

/* Writes the communicator's flight recorder: its last KUMI_FLIGHT_RECORDER operations (call,
 * sequence number, algorithm, bytes, peers, state, start time and duration), see
 * docs/RELIABILITY.md. path NULL: a file in KUMI_FLIGHT_RECORDER_DIR (default $TMPDIR or /tmp),
 * or the log when that is "none". Safe from any thread, also while a collective on comm hangs.
 * kumi writes it by itself when an operation fails. */
KUMI_API kumiResult_t kumiCommDumpFlightRecorder(kumiComm_t comm, const char* path);

/* Size in bytes of one element (0 for an invalid type). */
KUMI_API size_t kumiTypeSize(kumiDataType_t datatype);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KUMI_KUMI_H_ */
