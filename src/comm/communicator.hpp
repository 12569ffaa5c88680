// A communicator: a group of ranks with its connections, schedule cache and executor. Every
// operation validates its arguments, runs the schedule under a deadline, and on failure leaves
// the communicator failed (connections closed so that peers learn at once) with a message that
// names the operation, its sequence number and the peer at fault.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "collectives/executor.hpp"
#include "comm/call_args.hpp"
#include "comm/device_calls.hpp"
#include "collectives/cost_planner.hpp"
#include "collectives/prepared.hpp"
#include "comm/flight_recorder.hpp"
#include "core/config.hpp"
#include "core/socket.hpp"
#include "rendezvous/store.hpp"
#include "topology/rails.hpp"
#include "topology/world_map.hpp"
#include "transports/ib/ib_options.hpp"
#include "transports/shm/shm_transport.hpp"
#include "transports/transport.hpp"
#include "gpu/ipc_cache.hpp"

namespace kumi {

class TcpTransport;


class Communicator {
 public:
  // Collective over cfg.worldSize ranks: reaches the store, joins, listens for peers.
  static std::unique_ptr<Communicator> create(const Config& cfg);
  ~Communicator();

  // Collective over this communicator; returns null for color < 0.
  std::unique_ptr<Communicator> split(int color, int key);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& id() const { return id_; }
  const WorldMap& world() const { return world_; }
  const char* lastAlgorithm() const { return lastAlgorithm_.load(); }  // of the most recent collective; "" before any

  // Host buffers: returns when they may be reused (after the stream's earlier work, if one is
  // given). Device buffers: queues the call on the stream and returns at once (DeviceCalls).
  void execute(const CallArgs& args, void* stream = nullptr);
  // The first failure of a call on device buffers after it had returned; kumiSuccess if none.
  kumiResult_t asyncError(std::string* message) const;

  // From any thread: fails the operation in progress, closes connections.
  void abort();

  // kumiCommRegister / kumiCommDeregister: a user buffer that transports may use without staging
  // copies (RDMA registers it with the NIC). The handle is valid on any communicator state;
  // where no transport wants registrations it only records the buffer.
  std::uint64_t registerBuffer(void* data, std::size_t bytes);
  void deregisterBuffer(std::uint64_t handle);

  // From any thread, even while a collective hangs: writes the flight recorder to path (or to
  // KUMI_FLIGHT_RECORDER_DIR when path is empty) and returns where it went.
  std::string dumpFlightRecorder(const std::string& path, const std::string& reason) const;
  const std::shared_ptr<FlightRecorder>& flightRecorder() const { return recorder_; }

  // Use create() or split(); public for make_unique. listenAddress is where peers reach us.
  // cancel: the parent's abort flag while a split builds this communicator; parentStore: the
  // parent's store, whose failure notice (another rank aborted the split) ends the start-up.
  Communicator(const Config& cfg, int rank, int size, std::string id, std::shared_ptr<Store> base,
               const SockAddr& listenAddress, const std::atomic<bool>* cancel = nullptr,
               Store* parentStore = nullptr);

 private:
  PreparedSchedule& scheduleFor(const ScheduleKey& key, Algorithm algo);
  // A call on device buffers as the proxy thread runs it.
  struct DeviceRun {
    const gpu::StreamMark& mark;  // the caller's stream at the call
    DeviceExecutor& executor;
    gpu::WorkQueue& queue;
  };
  void executeLocked(const CallArgs& args, DeviceRun* device = nullptr);  // opMutex_ held
  // Whether a call goes the device path: its buffers are device memory (or it has none and a
  // stream was given). Throws for mixes that are refused (gpu/memory_kind.hpp).
  bool onDevice(const CallArgs& a, void* stream, gpu::Device& dev) const;
  void enqueueOnDevice(const CallArgs& a, void* stream, gpu::Device& dev);
  void runOnDevice(const CallArgs& a, const gpu::StreamMark& mark, DeviceExecutor& x, gpu::WorkQueue& q);
  void validate(const CallArgs& a, bool* inPlace) const;
  std::string describe(const CallArgs& a, std::uint64_t seq) const;
  // Turns a failed operation into the error every rank reports: the first failure posted on
  // the communicator (the root cause), then what this rank saw. Leaves the communicator failed.
  [[noreturn]] void failOperation(const CallArgs& a, std::uint64_t seq, const Error& e);
  // While a call waits long: fails it at once if another rank posted a failure.
  void checkFailureNotice();
  std::string abortStory() const;  // what peers are told when this rank aborts
  // While a collective waits long: publishes its stamp (once) and compares with the stamps the
  // schedule's peers published; throws CallMismatch when a peer is in the same call number with
  // different arguments.
  void compareStuckCalls(const CallStamp& mine, const std::vector<int>& peers, bool& published);
  std::string peerName(int peer);
  void connectTransports(const Deadline& deadline, const std::atomic<bool>* cancel, Store* parentStore);
  // RDMA as this rank sees it before knowing its peers: its port's link layer, or why none.
  struct RdmaPlan {
    std::string linkLayer;
    std::string why;
    std::vector<std::string> devices;  // usable RDMA ports, in KUMI_IB_HCA's order
    ib::IbOptions options;
  };
  // This rank's rail: the index into devices of the port nearest its GPU (src/topology/rails.hpp).
  int railFor(const std::vector<std::string>& devices) const;
  // How this host's GPUs reach RDMA port `device`, for GPUDirect RDMA; empty without topology.
  std::vector<topo::GpuPath> gpuPathsTo(const std::string& device) const;
  RdmaPlan planRdma() const;
  // Adds the RDMA transport for the peers it can take (both ends with ports of one link layer).
  void connectRdma(const RdmaPlan& plan, const std::vector<RankPlace>& places, std::vector<int>& routes,
                   std::vector<std::unique_ptr<Transport>>& transports);
  // Start-up: every rank's host id, hostname, RDMA link layer and TCP address, by a ring
  // allgather over `tcp`, which learns the addresses.
  std::vector<RankPlace> exchangePlaces(TcpTransport& tcp, const RankPlace& mine, const Deadline& deadline,
                                        const std::atomic<bool>* cancel);

  Config cfg_;
  int rank_;
  int size_;
  std::string id_;
  std::shared_ptr<Store> base_;   // the job's store, shared by all communicators of a process
  std::shared_ptr<Store> store_;  // scoped to this communicator
  SockAddr listenAddress_;
  WorldMap world_;
  bool sharedMemory_ = false;  // some peers are reached through shared memory
  int cpusAvailable_ = -1;     // CPUs this process may run on (spin policy); -1 until known
  std::unique_ptr<Transport> transport_;  // routes each peer to shm, ib or tcp
  Executor executor_;
  Planners planners_;  // from rank 0's link model, KUMI_ALGO and KUMI_CHUNK_SIZE
  struct CacheKey {
    ScheduleKey key;
    Algorithm algo;
    bool operator==(const CacheKey&) const = default;
  };
  struct CacheHash {
    std::size_t operator()(const CacheKey& k) const;
  };
  std::unordered_map<CacheKey, std::unique_ptr<PreparedSchedule>, CacheHash> cache_;
  // Training loops repeat one call: the last schedule is checked before the map.
  CacheKey lastKey_{};
  PreparedSchedule* last_ = nullptr;
  std::unordered_map<int, std::string> peerHosts_;
  // Call numbers for stamps: collectives count alike on every rank; sends and receives per pair.
  std::uint64_t collSeq_ = 0;
  std::vector<std::uint64_t> sentTo_, receivedFrom_;
  std::shared_ptr<FlightRecorder> recorder_;  // shared with the process's signal-driven dumper
  std::uint64_t splitSeq_ = 0;
  std::mutex opMutex_;  // held while an operation or a split runs; abort waits on it
  // kumiCommRegister handles -> the transport's handle (0 where no transport registers).
  std::unordered_map<std::uint64_t, std::uint64_t> registrations_;
  std::uint64_t nextRegistration_ = 1;
  std::atomic<bool> aborted_{false};
  kumiResult_t failedCode_ = kumiSuccess;
  std::string failure_;
  std::atomic<const char*> lastAlgorithm_{""};  // static storage (algorithmName); kumiCommGetAlgorithm
  gpu::Device* gpu_ = nullptr;  // the process's device, looked up at the first call
  bool gpuLooked_ = false;
  std::string noGpu_;           // why there is none
  mutable std::mutex asyncMutex_;
  kumiResult_t asyncCode_ = kumiSuccess;
  std::string asyncMessage_;
  // Last: destroyed first, so that the proxy finishes queued calls while everything they use exists.
  std::unique_ptr<DeviceCalls> device_;
  // Device memory of this host's other ranks, mapped once each (CUDA IPC), for the device
  // executor and for reading such messages into host buffers; set with the GPU.
  std::unique_ptr<gpu::IpcCache> ipc_;
  ShmTransport* shm_ = nullptr;  // the shared-memory transport inside transport_, if any
  void enablePeerMemory();
};

}  // namespace kumi
