#include "launch/launcher_table.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "core/error.hpp"

namespace kumi::launch {

std::optional<std::string> Context::get(const std::string& name) const {
  auto it = env_.find(name);
  if (it == env_.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

long long parseNumber(const std::string& what, const std::string& text, long long lo, long long hi) {
  // strtoll alone would accept " 3" and "+3"; a launcher never writes those, a typo might.
  bool digits = !text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) ||
                                  (text[0] == '-' && text.size() > 1));
  errno = 0;
  char* end = nullptr;
  long long v = digits ? std::strtoll(text.c_str(), &end, 10) : 0;
  if (!digits || errno != 0 || *end != '\0') fail(kumiInvalidArgument, what, "='", text, "' is not an integer");
  if (v < lo || v > hi) fail(kumiInvalidArgument, what, "=", v, " is outside [", lo, ", ", hi, "]");
  return v;
}

Sourced<long long>* intField(LaunchInfo& info, Field f) {
  switch (f) {
    case Field::Rank: return &info.rank;
    case Field::WorldSize: return &info.worldSize;
    case Field::LocalRank: return &info.localRank;
    case Field::LocalSize: return &info.localSize;
    case Field::NodeRank: return &info.nodeRank;
    case Field::NodeCount: return &info.nodeCount;
    case Field::Port: return &info.coordinatorPort;
    case Field::Generation: return &info.generation;
    case Field::Incarnation: return &info.incarnation;
    case Field::Host:
    case Field::JobId: return nullptr;
  }
  return nullptr;
}

const Sourced<long long>* intField(const LaunchInfo& info, Field f) {
  return intField(const_cast<LaunchInfo&>(info), f);
}

const char* fieldName(Field f) {
  switch (f) {
    case Field::Rank: return "rank";
    case Field::WorldSize: return "world size";
    case Field::LocalRank: return "local rank";
    case Field::LocalSize: return "local size";
    case Field::NodeRank: return "node rank";
    case Field::NodeCount: return "node count";
    case Field::Host: return "coordinator host";
    case Field::Port: return "coordinator port";
    case Field::JobId: return "job id";
    case Field::Generation: return "generation";
    case Field::Incarnation: return "incarnation";
  }
  return "?";
}

namespace {

constexpr long long kMaxCount = 1ll << 31;  // ranks and nodes fit an int

void setHostPort(const std::string& var, const std::string& text, LaunchInfo& info) {
  if (text.rfind("file://", 0) == 0) {
    if (!info.coordinatorHost) info.coordinatorHost.set(text, var);
    return;
  }
  auto colon = text.rfind(':');
  std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host.find_first_of("[]") != std::string::npos)
    fail(kumiInvalidArgument, var, "='", text, "' is not host:port, [ipv6]:port or file:///dir");
  long long port = parseNumber(var + " port", text.substr(colon + 1), 1, 65535);
  if (!info.coordinatorHost) info.coordinatorHost.set(host, var);
  if (!info.coordinatorPort) info.coordinatorPort.set(port, var);
}

}  // namespace

void applyRows(const Context& ctx, const std::vector<Row>& rows, LaunchInfo& info) {
  for (const Row& row : rows) {
    auto text = ctx.get(row.variable);
    if (!text) continue;
    const std::string var = row.variable;
    if (row.parse == Parse::HostPort) {
      setHostPort(var, *text, info);
      continue;
    }
    if (row.field == Field::Host || row.field == Field::JobId) {
      Sourced<std::string>& target = row.field == Field::Host ? info.coordinatorHost : info.jobId;
      if (target) continue;
      std::string value = *text;
      if (row.parse == Parse::FirstHost) value = value.substr(0, value.find(','));
      if (value.empty()) fail(kumiInvalidArgument, var, "='", *text, "' names no host");
      target.set(value, var);
      continue;
    }
    Sourced<long long>* target = intField(info, row.field);
    if (target == nullptr || *target) continue;
    switch (row.parse) {
      case Parse::Index: target->set(parseNumber(var, *text, 0, kMaxCount - 1), var); break;
      case Parse::Count: target->set(parseNumber(var, *text, 1, kMaxCount), var); break;
      case Parse::CountOrWord:  // "auto", "gpu", or an elastic range "1:4": not a fixed count
        if (text->find_first_not_of("0123456789") == std::string::npos)
          target->set(parseNumber(var, *text, 1, kMaxCount), var);
        break;
      case Parse::Port: target->set(parseNumber(var, *text, 1, 65535), var); break;
      case Parse::PortPlusOne: target->set(parseNumber(var, *text, 1, 65534) + 1, var + "+1"); break;
      case Parse::Text:
      case Parse::FirstHost:
      case Parse::HostPort: fail(kumiInternalError, "launch table: ", var, " has a text parse for a number");
    }
  }
}

}  // namespace kumi::launch
