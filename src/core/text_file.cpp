#include "core/text_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "core/socket.hpp"

namespace kumi {

std::optional<std::string> readFirstLine(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[512];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) return std::nullopt;
  std::string text(buf, static_cast<std::size_t>(n));
  text.resize(std::min(text.size(), text.find('\n')));
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

}  // namespace kumi
