// Client of the TCP store. Connecting retries with backoff until the deadline, because in a
// gang job the server (rank 0) may start after the others. Thread-safe: one request at a time.
#pragma once

#include <mutex>

#include "core/deadline.hpp"
#include "core/socket.hpp"
#include "rendezvous/store.hpp"

namespace kumi {

class TcpStoreClient final : public Store {
 public:
  TcpStoreClient(const std::string& hostPort, const Deadline& connectDeadline);
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Timeout timeout) override;
  std::vector<std::string> waitFor(const std::vector<std::string>& keys, Timeout timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  std::string compareSet(const std::string& key, const std::string& expected, const std::string& desired) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override { return "tcp://" + address_; }
  // The server's address as connected (useful to pick the interface toward it).
  SockAddr serverAddress() const { return server_; }

 private:
  // Sends a request and reads the whole reply under the lock; any failure drops the connection.
  template <class ReadReply>
  auto exchange(const std::string& request, Timeout serverTimeout, const char* what, ReadReply read);
  // A request whose reply is one integer (add, remove, check).
  std::int64_t integerReply(const std::string& request, const char* what);
  std::string address_;
  SockAddr server_;
  std::mutex mutex_;
  Fd fd_;
};

}  // namespace kumi
