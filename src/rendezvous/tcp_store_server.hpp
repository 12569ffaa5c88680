// The TCP store server: one thread, epoll, non-blocking clients. Hosted by rank 0 in-process or
// run alone as kumi-store. Blocking requests (get, wait) park the client until the keys appear
// or the request's own timeout passes, so one thread serves thousands of ranks.
//
// Strangers: every connection starts with a handshake (store_handshake.hpp) that must finish
// within kHandshakeSeconds; with a secret it proves the client knows it. Connections still in
// the handshake are capped (the oldest that has not sent its hello is dropped first, once it had
// kHandshakeGraceSeconds to answer), garbage and oversized requests drop only the client that
// sent them, and the warnings they cause are rate-limited. Thousands of ranks connecting at once
// are accepted in batches with their hellos read in between, so they all get in (measured with
// benchmarks/store_load.cpp: docs/PERFORMANCE.md).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "core/socket.hpp"

namespace kumi {

class TcpStoreServer {
 public:
  static constexpr double kHandshakeSeconds = 10;
  // At most this many connections in the handshake, and never more than a quarter of the
  // process's file-descriptor limit; beyond that the oldest is dropped.
  static constexpr std::size_t kMaxPendingHandshakes = 1024;
  // Stopped while it holds a failure notice (an "abort" key) and clients are still connected,
  // the server keeps answering for up to this long, until they leave: the process that hosts the
  // store often exits right after its own failure, and the survivors still polling for the
  // notice must read the root cause instead of finding the store gone.
  static constexpr double kNoticeLingerSeconds = 2.5;
  // A connection in the handshake is pushed out by newer ones only after this long: a real rank
  // on a busy host may answer its greeting late. While the cap is full of younger ones, new
  // connections wait in the kernel's listen queue; a flood still turns over the whole cap 4 times
  // a second, so it cannot keep real clients out for long.
  static constexpr double kHandshakeGraceSeconds = 0.25;

  // Listens on addr (port 0 picks a free one; see address()). Throws if the port is busy. With a
  // non-empty secret, only clients that prove they know it are served.
  explicit TcpStoreServer(const SockAddr& addr, std::string secret = {});
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  SockAddr address() const { return address_; }
  bool requiresSecret() const { return !secret_.empty(); }
  // Runs the loop on the calling thread until stop() (kumi-store) ...
  void serve();
  // ... or on a background thread (rank 0, kumirun).
  void start();
  void stop();

 private:
  struct State;
  SockAddr address_;
  std::string secret_;
  Fd listener_;
  Fd wakeFd_;
  std::unique_ptr<State> state_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace kumi
