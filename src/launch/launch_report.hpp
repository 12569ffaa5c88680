// What detection found, for people (kumi-topo --launch) and for programs (--launch --json):
// each field with the variable it came from.
#pragma once

#include <string>

#include "launch/launch.hpp"

namespace kumi::launch {

std::string formatText(const LaunchInfo& info);
std::string formatJson(const LaunchInfo& info);

}  // namespace kumi::launch
