#include "rendezvous/file_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/socket.hpp"

namespace kumi {

namespace {
// Holds an exclusive flock on the store's lock file for the scope.
class DirLock {
 public:
  explicit DirLock(const std::string& path) : fd_(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600)) {
    if (!fd_.valid() || ::flock(fd_.get(), LOCK_EX) != 0) failErrno("file store: cannot lock ", path);
  }
  ~DirLock() { ::flock(fd_.get(), LOCK_UN); }

 private:
  Fd fd_;
};

void sleepBackoff(int& ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  ms = std::min(ms * 2, 50);
}
}  // namespace

FileStore::FileStore(std::string directory) : dir_(std::move(directory)) {
  KUMI_REQUIRE_ARG(!dir_.empty(), "file store: empty directory");
  // mkdir -p
  for (std::size_t pos = 1; pos <= dir_.size(); ++pos) {
    if (pos == dir_.size() || dir_[pos] == '/') {
      std::string part = dir_.substr(0, pos);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) failErrno("file store: cannot create ", part);
    }
  }
}

std::string FileStore::pathOf(const std::string& key) const {
  // Keys hold '/', which must not become directories: escape everything but [A-Za-z0-9._-].
  static const char* hex = "0123456789abcdef";
  std::string name;
  for (unsigned char ch : key) {
    if (std::isalnum(ch) || ch == '.' || ch == '-' || ch == '_') {
      name += static_cast<char>(ch);
    } else {
      name += '%';
      name += hex[ch >> 4];
      name += hex[ch & 15];
    }
  }
  // File names are limited to 255 bytes, temporary suffix included: long keys keep a readable
  // prefix and add a hash of the whole key.
  if (name.size() > 160) {
    const std::uint64_t h = fnv1a(key);
    char tail[20];
    std::snprintf(tail, sizeof tail, "~%016llx", static_cast<unsigned long long>(h));
    name = name.substr(0, 160) + tail;
  }
  return dir_ + "/k." + name;
}

bool FileStore::readKey(const std::string& key, std::string* value) const {
  std::ifstream in(pathOf(key), std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *value = ss.str();
  return true;
}

void FileStore::writeKey(const std::string& key, const std::string& value) {
  std::string path = pathOf(key);
  std::string tmp = cat(path, ".tmp.", ::getpid(), '.', std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(value.data(), static_cast<std::streamsize>(value.size()));
    if (!out) fail(kumiSystemError, "file store: cannot write ", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) failErrno("file store: cannot rename ", tmp);
}

void FileStore::set(const std::string& key, const std::string& value) { writeKey(key, value); }

std::string FileStore::get(const std::string& key, Timeout timeout) {
  auto deadline = Deadline::after(timeout.count() / 1000.0);
  int ms = 1;
  std::string v;
  while (!readKey(key, &v)) {
    if (deadline.expired()) fail(kumiTimeout, describe(), ": key '", key, "' did not appear within ", timeout.count(), " ms");
    sleepBackoff(ms);
  }
  return v;
}

std::vector<std::string> FileStore::waitFor(const std::vector<std::string>& keys, Timeout timeout) {
  auto deadline = Deadline::after(timeout.count() / 1000.0);
  int ms = 1;
  for (;;) {
    std::vector<std::string> missing;
    for (const auto& k : keys)
      if (::access(pathOf(k).c_str(), F_OK) != 0) missing.push_back(k);
    if (missing.empty() || deadline.expired()) return missing;
    sleepBackoff(ms);
  }
}

std::int64_t FileStore::add(const std::string& key, std::int64_t delta) {
  DirLock lock(dir_ + "/.lock");
  std::string v;
  std::int64_t n = readKey(key, &v) ? std::strtoll(v.c_str(), nullptr, 10) : 0;
  n += delta;
  writeKey(key, std::to_string(n));
  return n;
}

std::string FileStore::compareSet(const std::string& key, const std::string& expected, const std::string& desired) {
  DirLock lock(dir_ + "/.lock");
  std::string v;
  bool exists = readKey(key, &v);
  if ((!exists && expected.empty()) || (exists && v == expected)) {
    writeKey(key, desired);
    return desired;
  }
  return exists ? v : std::string();
}

bool FileStore::remove(const std::string& key) { return ::unlink(pathOf(key).c_str()) == 0; }

bool FileStore::check(const std::vector<std::string>& keys) {
  for (const auto& k : keys)
    if (::access(pathOf(k).c_str(), F_OK) != 0) return false;
  return true;
}

}  // namespace kumi
