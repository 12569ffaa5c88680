// Settings of a communicator: from kumiConfig_t where the caller set a field, else from the
// KUMI_* environment, else the default. docs/ and the README list every variable.
#pragma once

#include <kumi/kumi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "launch/launch.hpp"

namespace kumi {

struct Config {
  int rank = -1;
  int worldSize = -1;
  std::string store;          // KUMI_STORE host:port
  int storeServe = -1;        // KUMI_STORE_SERVE: 1 serve, 0 connect only, -1 rank 0 serves
  std::string jobId;          // KUMI_JOB_ID
  std::string secret;         // KUMI_SECRET or KUMI_SECRET_FILE ("" = none); never printed
  int generation = 0;         // KUMI_GENERATION: the job's restart attempt, the same on every rank
  int incarnation = 0;        // KUMI_INCARNATION: this rank's own restarts (a pod replaced alone)
  double timeoutSeconds = 600;  // KUMI_TIMEOUT
  std::string socketIfname;   // KUMI_SOCKET_IFNAME
  int socketsPerPeer = 0;     // KUMI_SOCKET_NSOCKS (0 = automatic)
  std::uint64_t socketBufferBytes = 4u << 20;  // KUMI_SOCKET_BUFFER
  std::uint64_t chunkBytes = 0;  // KUMI_CHUNK_SIZE pipeline slice (0 = automatic)
  std::string algo;           // KUMI_ALGO
  std::string tuningFile;     // KUMI_TUNING_FILE: link model for the planner (kumi-bench --calibrate)
  std::string transport;      // KUMI_TRANSPORT: "" (shm on a host, ib or tcp between), "tcp" or "ib"
  std::string hostId;         // KUMI_HOSTID
  std::string shmDir = "/dev/shm";          // KUMI_SHM_DIR
  std::uint64_t shmBufferBytes = 512 << 10;  // KUMI_SHM_BUFFER: ring per peer and direction
  int shmCrossMemory = 1;                    // KUMI_SHM_CMA: process_vm_readv for large messages
  int cudaIpc = 1;                           // KUMI_CUDA_IPC: device memory between processes of a host by name
  int spinBeforeBlock = -1;   // KUMI_SPIN: idle polls (each yielding the CPU) before blocking; -1 auto
  int heartbeatSeconds = 5;   // KUMI_HEARTBEAT: probe idle connections every N s; dead after ~4 N (0 = kernel default)
  int checksum = 0;           // KUMI_CHECKSUM: CRC32C of every message part, checked on arrival
  std::uint32_t testCorruptEvery = 0;  // KUMI_TEST_CORRUPT_EVERY: tests flip a bit of every n-th part received
  int flightRecorderEntries = 256;     // KUMI_FLIGHT_RECORDER: operations kept per communicator (0 = off)
  std::string flightRecorderSignal;    // KUMI_FLIGHT_RECORDER_SIGNAL: dump every recorder on it (e.g. USR2); off if ""
  std::string flightRecorderDir;       // KUMI_FLIGHT_RECORDER_DIR: where dumps go (default $TMPDIR or /tmp; "" = the log only)
  std::string launcher = "none";       // who started the process (launch/launch.hpp), for messages
  // Where the launcher's naming puts rank r (a pod name), for a join that times out; may be empty.
  std::function<std::string(int rank)> rankHost;

  // Environment first, then non-default fields of user (may be null).
  static Config resolve(const kumiConfig_t* user);
  // Takes rank, world size, store, job id and generation from a detected launch.
  void applyLaunch(const launch::LaunchInfo& launch);
  // Throws kumiInvalidArgument naming the first bad field.
  void validate() const;
};

}  // namespace kumi
