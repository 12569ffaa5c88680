// The rendezvous store: a small key-value service through which ranks find each other.
// Modelled on Gloo's and PyTorch's stores; values are opaque bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kumi {

class Store {
 public:
  using Timeout = std::chrono::milliseconds;
  virtual ~Store() = default;

  virtual void set(const std::string& key, const std::string& value) = 0;
  // Waits until key exists (at most timeout) and returns its value; kumiTimeout otherwise.
  virtual std::string get(const std::string& key, Timeout timeout) = 0;
  // Waits until all keys exist or the timeout passes; returns the keys still missing (empty
  // when all arrived), so that callers can say who never came.
  virtual std::vector<std::string> waitFor(const std::vector<std::string>& keys, Timeout timeout) = 0;
  // waitFor that fails with kumiTimeout naming the missing keys.
  void wait(const std::vector<std::string>& keys, Timeout timeout);
  // Adds delta to the integer at key (missing = 0) and returns the new value.
  virtual std::int64_t add(const std::string& key, std::int64_t delta) = 0;
  // Sets key to desired if its value equals expected (a missing key equals ""); returns the
  // value stored afterwards, so the caller learns whether it won.
  virtual std::string compareSet(const std::string& key, const std::string& expected,
                                 const std::string& desired) = 0;
  // Removes key; true if it existed.
  virtual bool remove(const std::string& key) = 0;
  // True if every key exists now (no waiting).
  virtual bool check(const std::vector<std::string>& keys) = 0;
  // Human-readable location for messages ("tcp://host:port", "file:///dir").
  virtual std::string describe() const = 0;
  // Requests this client sent so far; `polls`: waits and checks, whose number grows with the time
  // spent waiting rather than with the job's size (0/0 for stores that count nothing).
  struct Requests {
    std::uint64_t total = 0, polls = 0;
  };
  virtual Requests requests() const { return {}; }
};

// Keys under a fixed prefix, so that jobs, generations and communicators never collide.
class PrefixStore final : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base) : prefix_(std::move(prefix)), base_(std::move(base)) {}
  void set(const std::string& k, const std::string& v) override { base_->set(full(k), v); }
  std::string get(const std::string& k, Timeout t) override { return base_->get(full(k), t); }
  std::vector<std::string> waitFor(const std::vector<std::string>& keys, Timeout t) override {
    auto missing = base_->waitFor(full(keys), t);
    for (auto& k : missing) k.erase(0, prefix_.size() + 1);
    return missing;
  }
  std::int64_t add(const std::string& k, std::int64_t d) override { return base_->add(full(k), d); }
  std::string compareSet(const std::string& k, const std::string& e, const std::string& d) override {
    return base_->compareSet(full(k), e, d);
  }
  bool remove(const std::string& k) override { return base_->remove(full(k)); }
  bool check(const std::vector<std::string>& keys) override { return base_->check(full(keys)); }
  std::string describe() const override { return base_->describe() + " prefix " + prefix_; }
  Requests requests() const override { return base_->requests(); }
  const std::string& prefix() const { return prefix_; }
  const std::shared_ptr<Store>& base() const { return base_; }

 private:
  std::string full(const std::string& k) const { return prefix_ + "/" + k; }
  std::vector<std::string> full(const std::vector<std::string>& keys) const {
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (const auto& k : keys) out.push_back(full(k));
    return out;
  }
  std::string prefix_;
  std::shared_ptr<Store> base_;
};

}  // namespace kumi
