// The real inputs of detection: this process's environment, hostname and files.
#include <unistd.h>

#include <dirent.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "launch/launch.hpp"

extern char** environ;  // POSIX: the process environment, read once here

namespace kumi::launch {

FileSystem realFileSystem() {
  FileSystem fs;
  fs.read = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  };
  fs.listDir = [](const std::string& dir) {
    std::vector<std::string> names;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return names;
    while (const dirent* e = ::readdir(d.get()))
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    return names;
  };
  return fs;
}

LaunchInfo detectFromProcess() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    auto eq = entry.find('=');
    if (eq != std::string::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return detect(env, host, realFileSystem());
}

}  // namespace kumi::launch
