// Reading one-line text files: sysfs attributes and /proc entries.
#pragma once

#include <optional>
#include <string>

namespace kumi {

// The first line of a small file, trailing whitespace removed; nullopt when it cannot be opened
// or read (a missing file, EACCES in a container, EINVAL from an unset sysfs attribute), which
// the caller judges.
std::optional<std::string> readFirstLine(const std::string& path);

}  // namespace kumi
