// A store in a directory of a shared filesystem (NFS, Lustre, a Kubernetes volume): one file per
// key, written atomically by rename; add and compare-set serialised with flock. Slower than the
// TCP store, but needs no server and survives any single process.
#pragma once

#include <string>

#include "rendezvous/store.hpp"

namespace kumi {

class FileStore final : public Store {
 public:
  explicit FileStore(std::string directory);  // created if missing
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Timeout timeout) override;
  std::vector<std::string> waitFor(const std::vector<std::string>& keys, Timeout timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  std::string compareSet(const std::string& key, const std::string& expected, const std::string& desired) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override { return "file://" + dir_; }

 private:
  std::string pathOf(const std::string& key) const;
  bool readKey(const std::string& key, std::string* value) const;
  void writeKey(const std::string& key, const std::string& value);
  std::string dir_;
};

}  // namespace kumi
