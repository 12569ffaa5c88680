// kumi: C++ interface. A thin RAII layer over the C API in kumi.h: errors become kumi::Error,
// communicators free themselves, and element types are deduced from the buffers.
#ifndef KUMI_KUMI_HPP_
#define KUMI_KUMI_HPP_

#include <kumi/kumi.h>

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kumi {

// Thrown for every failure; code() tells the category, what() the full story.
class Error : public std::runtime_error {
 public:
  Error(kumiResult_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  kumiResult_t code() const noexcept { return code_; }

 private:
  kumiResult_t code_;
};

inline void check(kumiResult_t result) {
  if (result != kumiSuccess) throw Error(result, kumiGetLastError());
}

// 16-bit floating-point storage types; kumi reduces them in float32.
struct float16_t { std::uint16_t bits; };
struct bfloat16_t { std::uint16_t bits; };

template <class T> struct DataTypeOf;
template <> struct DataTypeOf<std::int8_t> { static constexpr kumiDataType_t value = kumiInt8; };
template <> struct DataTypeOf<std::uint8_t> { static constexpr kumiDataType_t value = kumiUint8; };
template <> struct DataTypeOf<std::int32_t> { static constexpr kumiDataType_t value = kumiInt32; };
template <> struct DataTypeOf<std::uint32_t> { static constexpr kumiDataType_t value = kumiUint32; };
template <> struct DataTypeOf<std::int64_t> { static constexpr kumiDataType_t value = kumiInt64; };
template <> struct DataTypeOf<std::uint64_t> { static constexpr kumiDataType_t value = kumiUint64; };
template <> struct DataTypeOf<float16_t> { static constexpr kumiDataType_t value = kumiFloat16; };
template <> struct DataTypeOf<bfloat16_t> { static constexpr kumiDataType_t value = kumiBfloat16; };
template <> struct DataTypeOf<float> { static constexpr kumiDataType_t value = kumiFloat32; };
template <> struct DataTypeOf<double> { static constexpr kumiDataType_t value = kumiFloat64; };
template <class T> inline constexpr kumiDataType_t dataTypeOf = DataTypeOf<T>::value;

class Comm {
 public:
  // From KUMI_RANK, KUMI_WORLD_SIZE, KUMI_STORE (set by kumirun or a launcher).
  static Comm fromEnv() {
    kumiComm_t h = nullptr;
    check(kumiCommInitFromEnv(&h));
    return Comm(h);
  }
  Comm(int worldSize, int rank, const std::string& storeAddr) {
    check(kumiCommInitRank(&handle_, worldSize, rank, storeAddr.c_str()));
  }
  explicit Comm(const kumiConfig_t& config) { check(kumiCommInitConfig(&handle_, &config)); }
  // Adopts a handle from the C API.
  explicit Comm(kumiComm_t handle) noexcept : handle_(handle) {}
  Comm() noexcept = default;
  Comm(Comm&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Comm& operator=(Comm&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm() { reset(); }

  explicit operator bool() const noexcept { return handle_ != nullptr; }
  kumiComm_t get() const noexcept { return handle_; }

  int rank() const {
    int r = -1;
    check(kumiCommRank(handle_, &r));
    return r;
  }
  int size() const {
    int s = -1;
    check(kumiCommSize(handle_, &s));
    return s;
  }
  // Zero-copy registration of a buffer (kumiCommRegister): deregister before freeing it.
  void* registerBuffer(void* buff, std::size_t bytes) {
    void* h = nullptr;
    check(kumiCommRegister(handle_, buff, bytes, &h));
    return h;
  }
  void deregisterBuffer(void* handle) { check(kumiCommDeregister(handle_, handle)); }
  // Host index (0 .. hosts-1, in order of each host's lowest rank) of a rank of this communicator.
  int host(int rank) const {
    int h = -1;
    check(kumiCommHost(handle_, rank, &h));
    return h;
  }
  // Algorithm the most recent operation ran ("" before any): what ran after KUMI_ALGO and fallbacks.
  std::string lastAlgorithm() const {
    const char* name = "";
    check(kumiCommGetAlgorithm(handle_, &name));
    return name;
  }

  // Writes the flight recorder (last operations) to path, or to KUMI_FLIGHT_RECORDER_DIR when empty.
  void dumpFlightRecorder(const std::string& path = "") const {
    check(kumiCommDumpFlightRecorder(handle_, path.empty() ? nullptr : path.c_str()));
  }

  // Ranks with equal color form a new communicator ordered by key; color < 0 gives an empty Comm.
  Comm split(int color, int key) const {
    kumiComm_t h = nullptr;
    check(kumiCommSplit(handle_, color, key, &h));
    return Comm(h);
  }

  // Fails this communicator's operations on every rank and releases it.
  void abort() {
    if (handle_) check(kumiCommAbort(std::exchange(handle_, nullptr)));
  }

  // The pointer forms take a CUDA stream for device buffers (kumi.h: queued, returns at once);
  // the span and vector forms are host memory.
  template <class T>
  void allReduce(const T* send, T* recv, std::size_t count, kumiRedOp_t op = kumiSum, kumiStream_t stream = nullptr) const {
    check(kumiAllReduce(send, recv, count, dataTypeOf<T>, op, handle_, stream));
  }
  template <class T>
  void allReduce(std::span<T> inOut, kumiRedOp_t op = kumiSum) const {
    allReduce(inOut.data(), inOut.data(), inOut.size(), op);
  }
  template <class T>
  void allReduce(std::vector<T>& inOut, kumiRedOp_t op = kumiSum) const {
    allReduce(std::span<T>(inOut), op);
  }
  template <class T>
  void reduce(const T* send, T* recv, std::size_t count, int root, kumiRedOp_t op = kumiSum,
              kumiStream_t stream = nullptr) const {
    check(kumiReduce(send, recv, count, dataTypeOf<T>, op, root, handle_, stream));
  }
  template <class T>
  void broadcast(const T* send, T* recv, std::size_t count, int root, kumiStream_t stream = nullptr) const {
    check(kumiBroadcast(send, recv, count, dataTypeOf<T>, root, handle_, stream));
  }
  template <class T>
  void broadcast(std::span<T> inOut, int root) const {
    broadcast(inOut.data(), inOut.data(), inOut.size(), root);
  }
  template <class T>
  void broadcast(std::vector<T>& inOut, int root) const {
    broadcast(std::span<T>(inOut), root);
  }
  template <class T>
  void reduceScatter(const T* send, T* recv, std::size_t recvCount, kumiRedOp_t op = kumiSum,
                     kumiStream_t stream = nullptr) const {
    check(kumiReduceScatter(send, recv, recvCount, dataTypeOf<T>, op, handle_, stream));
  }
  template <class T>
  void allGather(const T* send, T* recv, std::size_t sendCount, kumiStream_t stream = nullptr) const {
    check(kumiAllGather(send, recv, sendCount, dataTypeOf<T>, handle_, stream));
  }
  // send and recv hold size() * count elements each and must not overlap.
  template <class T>
  void allToAll(const T* send, T* recv, std::size_t count, kumiStream_t stream = nullptr) const {
    check(kumiAllToAll(send, recv, count, dataTypeOf<T>, handle_, stream));
  }
  void barrier() const { check(kumiBarrier(handle_, nullptr)); }
  template <class T>
  void send(const T* data, std::size_t count, int peer) const {
    check(kumiSend(data, count, dataTypeOf<T>, peer, handle_, nullptr));
  }
  template <class T>
  void recv(T* data, std::size_t count, int peer) const {
    check(kumiRecv(data, count, dataTypeOf<T>, peer, handle_, nullptr));
  }

 private:
  void reset() noexcept {
    if (handle_) kumiCommDestroy(std::exchange(handle_, nullptr));
  }
  kumiComm_t handle_ = nullptr;
};

}  // namespace kumi

#endif  // KUMI_KUMI_HPP_
