#include "topology/cpu_list.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi::topo {

std::string formatCpuList(const CpuList& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += cat('-', cpus[j]);
    i = j + 1;
  }
  return out;
}

namespace {

int parseCpu(const std::string& item, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(item.c_str(), &end, 10);
  if (item.empty() || item[0] == '-' || item[0] == '+' || errno != 0 || *end != '\0' || v > 1 << 20)
    fail(kumiInvalidArgument, "'", text, "' is not a CPU list (expected e.g. 0-3,8)");
  return static_cast<int>(v);
}

}  // namespace

CpuList parseCpuList(const std::string& text) {
  CpuList out;
  if (trim(text).empty()) return out;
  for (const std::string& item : splitList(text, ',')) {
    auto dash = item.find('-');
    int lo = parseCpu(trim(item.substr(0, dash)), text);
    int hi = dash == std::string::npos ? lo : parseCpu(trim(item.substr(dash + 1)), text);
    if (hi < lo) fail(kumiInvalidArgument, "'", text, "' is not a CPU list: range ", item, " runs backwards");
    for (int c = lo; c <= hi; ++c) out.push_back(c);
  }
  return normalized(std::move(out));
}

CpuList normalized(CpuList cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

bool containsAll(const CpuList& outer, const CpuList& inner) {
  return std::includes(outer.begin(), outer.end(), inner.begin(), inner.end());
}

}  // namespace kumi::topo
