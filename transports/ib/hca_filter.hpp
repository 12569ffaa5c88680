// KUMI_IB_HCA: which RDMA devices and ports the IB transport may use, in NCCL_IB_HCA's syntax so
// that an existing job script works unchanged. Pure code, no verbs: the transport asks it about the
// devices it found.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kumi::ib {

class HcaFilter {
 public:
  // rank() of every device that an inclusion list does not name, and of all devices otherwise.
  static constexpr int kUnlisted = 1 << 30;

  // "" admits everything. Otherwise a comma-separated list of NAME[:PORT]; a leading '^' makes it
  // an exclusion list; a leading '=' (after '^' if any) makes names match exactly instead of by
  // prefix. Prefix matching is NCCL's: "mlx5_1" also matches mlx5_10..mlx5_19, hence '='.
  // Throws kumi::Error (kumiInvalidArgument) naming the bad entry.
  static HcaFilter parse(std::string_view spec);

  bool admits(std::string_view device, int port) const;
  // Whether some port of the device may be admitted; an exclusion of single ports ("^mlx5_0:1")
  // leaves the device in, and admits() then decides port by port.
  bool admitsAnyPortOf(std::string_view device) const;
  // Position of the first inclusion entry naming this device and port, so that the transport uses
  // devices in the order the user listed them; kUnlisted otherwise (and for exclusion lists).
  int rank(std::string_view device, int port) const;
  std::string describe() const;  // for INFO logs

 private:
  struct Entry {
    std::string name;
    int port = 0;  // 0: every port
  };
  bool nameMatches(const Entry& e, std::string_view device) const;

  std::vector<Entry> entries_;
  bool exclude_ = false;
  bool exact_ = false;
};

}  // namespace kumi::ib
