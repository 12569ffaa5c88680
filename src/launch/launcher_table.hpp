// The shape of one launcher's table: which variables mark it present, and rows of
// (variable -> field, parse). What a row cannot say (a host list to expand, a hostfile to read)
// goes in the launcher's derive step. Internal to src/launch/.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "launch/launch.hpp"

namespace kumi::launch {

enum class Field { Rank, WorldSize, LocalRank, LocalSize, NodeRank, NodeCount, Host, Port, JobId, Generation, Incarnation };

enum class Parse {
  Index,        // integer >= 0
  Count,        // integer >= 1
  CountOrWord,  // integer >= 1; a word ("auto") or an elastic range ("1:4") is skipped
  Port,         // 1..65535
  PortPlusOne,  // a port that torch's own store uses: kumi takes the next one (docs/LAUNCH.md)
  Text,
  FirstHost,    // "a,b,c" -> "a"
  HostPort,     // "host:port" or "[v6]:port" -> Host and Port; "file:///dir" -> Host only
};

struct Row {
  const char* variable;
  Field field;
  Parse parse;
};

// Process: one value set per process (torchrun, Open MPI, Slurm, KUMI_*).
// Pod: one value set per pod (Kubernetes operators): its rows speak of nodes, never of ranks.
enum class Scope { Process, Pod };

// What a launcher may look at.
class Context {
 public:
  Context(const Environment& env, const std::string& hostname, const FileSystem& files)
      : env_(env), hostname_(hostname), files_(files) {}
  std::optional<std::string> get(const std::string& name) const;  // empty counts as unset
  bool has(const std::string& name) const { return get(name).has_value(); }
  const Environment& env() const { return env_; }
  const std::string& hostname() const { return hostname_; }
  const FileSystem& files() const { return files_; }

 private:
  const Environment& env_;
  const std::string& hostname_;
  const FileSystem& files_;
};

struct Launcher {
  const char* name;
  Scope scope;
  std::function<bool(const Context&)> present;
  std::vector<Row> rows;  // the first row that gives a field wins over later ones
  std::function<void(const Context&, LaunchInfo&)> derive;  // may be empty
  // How to supply the world size when this launcher cannot (Indexed Job, JobSet): for the error.
  const char* missingWorldHint = nullptr;
};

// Applies `rows` to `info`, parsing each value; a malformed one throws, naming the variable.
void applyRows(const Context& ctx, const std::vector<Row>& rows, LaunchInfo& info);

// The integer fields of LaunchInfo by Field (nullptr for Host and JobId).
Sourced<long long>* intField(LaunchInfo& info, Field f);
const Sourced<long long>* intField(const LaunchInfo& info, Field f);
const char* fieldName(Field f);  // "rank", "world size", ...

// Decimal integer in [lo, hi], or an error naming `what` (a variable or a file).
long long parseNumber(const std::string& what, const std::string& text, long long lo, long long hi);

}  // namespace kumi::launch
