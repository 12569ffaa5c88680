// The peer-memory probe (gpu/peer_memory.hpp) against sysfs trees made here: each module kumi
// knows, the peer client alone, and nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gpu/peer_memory.hpp"

namespace kumi::gpu {
namespace {

namespace fs = std::filesystem;

class PeerMemoryProbe : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("kumi-sys-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "module" / "nvidia");  // the GPU driver alone is not enough
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(PeerMemoryProbe, NothingLoadedSaysWhatWasLookedFor) {
  const PeerMemoryModule m = probePeerMemory(root_.string());
  EXPECT_FALSE(m.loaded);
  EXPECT_NE(m.detail.find("nvidia_peermem"), std::string::npos) << m.detail;
}

TEST_F(PeerMemoryProbe, FindsEitherModule) {
  fs::create_directories(root_ / "module" / "nv_peer_mem");
  PeerMemoryModule m = probePeerMemory(root_.string());
  EXPECT_TRUE(m.loaded);
  EXPECT_EQ(m.detail, "nv_peer_mem is loaded");
  fs::create_directories(root_ / "module" / "nvidia_peermem");
  m = probePeerMemory(root_.string());
  EXPECT_TRUE(m.loaded);
  EXPECT_EQ(m.detail, "nvidia_peermem is loaded");
}

TEST_F(PeerMemoryProbe, FindsARegisteredPeerClientWithoutAModuleEntry) {
  fs::create_directories(root_ / "kernel" / "mm" / "memory_peers" / "nv_mem");
  std::ofstream(root_ / "kernel" / "mm" / "memory_peers" / "nv_mem" / "version") << "1.3\n";
  const PeerMemoryModule m = probePeerMemory(root_.string());
  EXPECT_TRUE(m.loaded);
  EXPECT_NE(m.detail.find("nv_mem"), std::string::npos) << m.detail;
}

}  // namespace
}  // namespace kumi::gpu
