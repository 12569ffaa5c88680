#include "transports/ib/hca_filter.hpp"

#include <cctype>

#include "core/error.hpp"
#include "core/strings.hpp"

namespace kumi::ib {

namespace {

// Kernel RDMA device names (mlx5_0, rxe0, bnxt_re1, irdma-eth0, efa_0): anything else is a typo
// or a shell quoting slip, better refused than silently matching nothing.
bool plausibleDeviceName(const std::string& name) {
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  return !name.empty();
}

}  // namespace

HcaFilter HcaFilter::parse(std::string_view specView) {
  HcaFilter f;
  const std::string spec(specView);
  if (trim(spec).empty()) return f;
  std::string list = trim(spec);
  if (list[0] == '^') {
    f.exclude_ = true;
    list.erase(0, 1);
  }
  if (!list.empty() && list[0] == '=') {
    f.exact_ = true;
    list.erase(0, 1);
  }
  if (trim(list).empty()) fail(kumiInvalidArgument, "KUMI_IB_HCA='", spec, "': no device after '^' or '='");
  for (const std::string& item : splitList(list, ',')) {
    auto bad = [&](const char* why) {
      fail(kumiInvalidArgument, "KUMI_IB_HCA='", spec, "': entry '", item, "': ", why);
    };
    if (item.empty()) bad("empty entry");
    Entry e;
    auto colon = item.find(':');
    e.name = item.substr(0, colon);
    if (e.name.empty()) bad("empty device name");
    if (!plausibleDeviceName(e.name))
      bad("not a device name (letters, digits, '_', '-', '.'; '^' and '=' only at the start of the list)");
    if (colon != std::string::npos) {
      std::string port = item.substr(colon + 1);
      bool digits = !port.empty() && port.size() <= 3;
      for (char c : port) digits = digits && std::isdigit(static_cast<unsigned char>(c));
      if (!digits) bad("port must be a number 1..255");
      e.port = std::stoi(port);
      if (e.port < 1 || e.port > 255) bad("port must be a number 1..255");
    }
    f.entries_.push_back(std::move(e));
  }
  return f;
}

bool HcaFilter::nameMatches(const Entry& e, std::string_view device) const {
  return exact_ ? device == e.name : device.substr(0, e.name.size()) == e.name;
}

bool HcaFilter::admits(std::string_view device, int port) const {
  if (entries_.empty()) return true;
  bool listed = false;
  for (const Entry& e : entries_)
    if (nameMatches(e, device) && (e.port == 0 || e.port == port)) listed = true;
  return listed != exclude_;
}

bool HcaFilter::admitsAnyPortOf(std::string_view device) const {
  if (entries_.empty()) return true;
  for (const Entry& e : entries_) {
    if (!nameMatches(e, device)) continue;
    if (!exclude_) return true;
    if (e.port == 0) return false;  // whole device excluded; a single excluded port leaves the others
  }
  return exclude_;
}

int HcaFilter::rank(std::string_view device, int port) const {
  if (exclude_) return kUnlisted;
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (nameMatches(entries_[i], device) && (entries_[i].port == 0 || entries_[i].port == port))
      return static_cast<int>(i);
  return kUnlisted;
}

std::string HcaFilter::describe() const {
  if (entries_.empty()) return "all RDMA devices (KUMI_IB_HCA unset)";
  std::string names;
  for (const Entry& e : entries_) {
    if (!names.empty()) names += ", ";
    names += e.port ? cat(e.name, " port ", e.port) : e.name;
  }
  return cat(exclude_ ? "all RDMA devices but " : "only ", exact_ ? "exactly " : "names starting with ", names,
             exclude_ ? "" : " (in that order)");
}

}  // namespace kumi::ib
