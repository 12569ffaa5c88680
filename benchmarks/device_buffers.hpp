// kumi-bench's buffers on a GPU (--memory device), through the CUDA runtime directly, as an
// application would: kumi-bench sees only kumi's public API. Built without CUDA, asking for them
// is refused with the reason.
#pragma once

#include <cstddef>
#include <string>

namespace bench {

class DeviceBuffers {
 public:
  // Throws std::runtime_error naming the failing CUDA call (or that there is no CUDA build).
  DeviceBuffers();
  ~DeviceBuffers();
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;

  // Device buffers of at least these sizes (kept, grown when asked for more).
  void reserve(std::size_t sendBytes, std::size_t recvBytes);
  std::byte* send() const { return send_; }
  std::byte* recv() const { return recv_; }
  void* stream() const { return stream_; }
  void toDevice(void* dst, const void* src, std::size_t bytes);
  void toHost(void* dst, const void* src, std::size_t bytes);
  void synchronize();  // the stream
  std::string deviceName() const { return name_; }

 private:
  std::byte* send_ = nullptr;
  std::byte* recv_ = nullptr;
  std::size_t sendBytes_ = 0, recvBytes_ = 0;
  void* stream_ = nullptr;
  std::string name_;
};

}  // namespace bench
