// Client of the TCP store. Connecting retries with backoff until the deadline, because in a
// gang job the server (rank 0) may start after the others. Every connection starts with the
// store's handshake (store_handshake.hpp): with a secret, client and server prove to each other
// that they know it before any request. Thread-safe: one request at a time.
#pragma once

#include <atomic>
#include <mutex>

#include "rendezvous/store_reply.hpp"

#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/store.hpp"

namespace kumi {

class TcpStoreClient final : public Store {
 public:
  // secret: KUMI_SECRET (Config::secret); "" connects only to a store that has none either.
  TcpStoreClient(const std::string& hostPort, const Deadline& connectDeadline, const std::string& secret = {});
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Timeout timeout) override;
  std::vector<std::string> waitFor(const std::vector<std::string>& keys, Timeout timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  std::string compareSet(const std::string& key, const std::string& expected, const std::string& desired) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override { return "tcp://" + address_; }
  Requests requests() const override { return {sent_.load(), polls_.load()}; }
  // The server's address as connected (useful to pick the interface toward it).
  SockAddr serverAddress() const { return server_; }

 private:
  // Sends a request and reads the whole reply under the lock; any failure drops the connection.
  store_protocol::Reply exchange(const std::string& request, store_protocol::Command command, Timeout serverTimeout,
                                 const char* what);
  // The handshake on a fresh connection: false when the connection broke during it (worth a new
  // one); throws when the server refuses or does not speak the protocol.
  bool handshake(int fd, const Deadline& deadline, const std::string& secret, std::string* brokenBecause);
  std::string address_;
  SockAddr server_;
  std::mutex mutex_;
  Fd fd_;
  std::atomic<std::uint64_t> sent_{0}, polls_{0};
};

}  // namespace kumi
