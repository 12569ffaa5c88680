// Sets (nullptr: unsets) an environment variable for this object's life. The library reads
// KUMI_* when a communicator is created, so tools that want one communicator per setting (an
// algorithm forced, a transport chosen) create it inside such a scope. Not thread-safe, as
// setenv is not: for tools' main threads only.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace kumi {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace kumi
