// What the TCP store server does with requests, without sockets: the key-value data, parked gets
// and waits, and replies appended to each session's output. The server (tcp_store_server.cpp)
// owns the connections and feeds this engine; the fuzzer feeds it bytes directly.
#pragma once

#include <chrono>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "rendezvous/store_protocol.hpp"
#include "rendezvous/store_request.hpp"

namespace kumi {

class StoreEngine {
 public:
  using Clock = std::chrono::steady_clock;

  // One client's byte streams. The server extends it with its socket.
  struct Session {
    std::string in;   // received, not yet parsed
    std::string out;  // replies not yet sent
    bool parked = false;  // a waiter holds the reply; nothing more is parsed until it is answered
  };

  // Parses and executes the complete requests in s.in and appends their replies to s.out.
  // Sessions whose parked waits were answered are added to `touched`. Returns false on a protocol
  // violation (the caller drops the client). Stops early while s has a large reply unsent, so a
  // client that sends without reading cannot make the server buffer without bound.
  bool handleInput(Session& s, std::vector<Session*>& touched);
  // Answers the waits whose timeout has passed with the keys still missing.
  void expire(Clock::time_point now, std::vector<Session*>& touched);
  // Milliseconds until the next wait expires, at most cap (for epoll_wait).
  int msUntilNextExpiry(Clock::time_point now, int cap) const;
  // The session's connection is gone: its parked wait (if any) is forgotten.
  void forget(Session* s);

  std::size_t keyCount() const { return data_.size(); }
  // Whether some key is `name` or ends with "/" + name (a failure notice of any communicator).
  bool holdsKeyNamed(const std::string& name) const {
    for (const auto& kv : data_) {
      const std::string& k = kv.first;
      if (k == name || (k.size() > name.size() && k.compare(k.size() - name.size(), name.size(), name) == 0 &&
                        k[k.size() - name.size() - 1] == '/'))
        return true;
    }
    return false;
  }

 private:
  struct Waiter {
    Session* session;
    std::vector<std::string> keys;
    Clock::time_point deadline;
    bool isGet;
  };
  void execute(Session& s, store_protocol::Request& q, std::vector<Session*>& touched);
  bool allPresent(const std::vector<std::string>& keys) const;
  void answerWaiter(const Waiter& w, bool timedOut);
  void removeWaiter(std::list<Waiter>::iterator it);
  void keyChanged(const std::string& key, std::vector<Session*>& touched);

  std::unordered_map<std::string, std::string> data_;
  std::list<Waiter> waiters_;
  std::unordered_map<std::string, std::vector<std::list<Waiter>::iterator>> waitersByKey_;
};

}  // namespace kumi
