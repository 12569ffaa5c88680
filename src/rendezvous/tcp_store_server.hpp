// The TCP store server: one thread, epoll, non-blocking clients. Hosted by rank 0 in-process or
// run alone as kumi-store. Blocking requests (get, wait) park the client until the keys appear
// or the request's own timeout passes, so one thread serves thousands of ranks.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "core/socket.hpp"

namespace kumi {

class TcpStoreServer {
 public:
  // Listens on addr (port 0 picks a free one; see address()). Throws if the port is busy.
  explicit TcpStoreServer(const SockAddr& addr);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  SockAddr address() const { return address_; }
  // Runs the loop on the calling thread until stop() (kumi-store) ...
  void serve();
  // ... or on a background thread (rank 0, kumirun).
  void start();
  void stop();

 private:
  struct State;
  SockAddr address_;
  Fd listener_;
  Fd wakeFd_;
  std::unique_ptr<State> state_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace kumi
