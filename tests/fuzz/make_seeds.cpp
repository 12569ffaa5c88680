// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/) with the real
// message builders, so that valid seeds stay valid when a format changes: run
//   build-fuzz/fuzz_make_seeds tests/fuzz/corpus
// and commit what changed. Seeds are small: valid inputs and near misses (one field off).
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "collectives/link_model.hpp"
#include "fuzz_input.hpp"
#include "rendezvous/store_handshake.hpp"
#include "rendezvous/store_protocol.hpp"
#include "transports/ib/connection_record.hpp"
#include "transports/shm/layout_check.hpp"
#include "transports/tcp/handshake_check.hpp"

namespace {

namespace sp = kumi::store_protocol;
namespace tcp = kumi::tcp;
using kumi::fuzz::fixedNonce;
using kumi::fuzz::kSecret;

std::string root;

template <class T>
std::string bytesOf(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

void write(const std::string& target, const std::string& name, const std::string& content) {
  const std::string dir = root + "/" + target;
  ::mkdir(root.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/" + name, std::ios::binary) << content;
}

// fuzz_store_server: [setup][client][u16 length][bytes]...
std::string chunk(int client, const std::string& bytes) {
  std::string s(1, static_cast<char>(client));
  s += static_cast<char>(bytes.size() & 0xff);
  s += static_cast<char>(bytes.size() >> 8);
  return s + bytes;
}

void storeServerSeeds() {
  const auto open = bytesOf(sp::makeClientHello("", {}, {}));
  const auto authed = bytesOf(sp::makeClientHello(kSecret, fixedNonce(0x5a), fixedNonce(0xc1)));
  const auto forged = bytesOf(sp::makeClientHello("not-the-secret", fixedNonce(0x5a), fixedNonce(0xc1)));
  auto req = [](auto build) {
    sp::Writer w;
    build(w);
    return w.bytes();
  };
  const std::string set = req([](sp::Writer& w) { w.u8(sp::kSet); w.str("key"); w.str("value"); });
  const std::string get = req([](sp::Writer& w) { w.u8(sp::kGet); w.str("key"); w.u32(5); });
  const std::string getMissing = req([](sp::Writer& w) { w.u8(sp::kGet); w.str("missing"); w.u32(1000); });
  const std::string wait = req([](sp::Writer& w) { w.u8(sp::kWait); w.strs({"key", "other", "key"}); w.u32(100); });
  const std::string add = req([](sp::Writer& w) { w.u8(sp::kAdd); w.str("n"); w.i64(0x7fffffffffffffffll); });
  const std::string cas = req([](sp::Writer& w) { w.u8(sp::kCompareSet); w.str("key"); w.str(""); w.str("x"); });
  const std::string rm = req([](sp::Writer& w) { w.u8(sp::kRemove); w.str("key"); });
  const std::string check = req([](sp::Writer& w) { w.u8(sp::kCheck); w.strs({"key", "n"}); });
  const std::string ping = req([](sp::Writer& w) { w.u8(sp::kPing); });
  write("fuzz_store_server", "open-every-command",
        std::string(1, '\0') + chunk(0, open + set + get + add + add + cas + check + rm + ping));
  write("fuzz_store_server", "authed-every-command",
        std::string(1, '\1') + chunk(0, authed + set + wait + add + cas + check + rm + ping));
  write("fuzz_store_server", "forged-proof", std::string(1, '\1') + chunk(0, forged + set));
  write("fuzz_store_server", "parked-then-woken",
        std::string(1, '\0') + chunk(0, open + getMissing) + chunk(1, open) + chunk(1, wait) +
            chunk(2, open + req([](sp::Writer& w) { w.u8(sp::kSet); w.str("missing"); w.str("now"); })) +
            chunk(1, req([](sp::Writer& w) { w.u8(sp::kSet); w.str("other"); w.str("o"); })));
  write("fuzz_store_server", "split-request", std::string(1, '\0') + chunk(0, open + set.substr(0, 5)) +
                                                   chunk(0, set.substr(5)) + chunk(0, get));
  write("fuzz_store_server", "oversized-key",
        std::string(1, '\0') + chunk(0, open + req([](sp::Writer& w) { w.u8(sp::kGet); w.u32(sp::kMaxKeyBytes + 1); })));
  write("fuzz_store_server", "garbage-hello", std::string(1, '\0') + chunk(0, "GET / HTTP/1.1\r\n\r\n"));
  write("fuzz_store_server", "many-keys-count",
        std::string(1, '\0') + chunk(0, open + req([](sp::Writer& w) { w.u8(sp::kWait); w.u32(1000000); })));
}

void storeReplySeeds() {
  const auto cmd = [](sp::Command c) { return std::string(1, static_cast<char>(c - 1)); };
  sp::Writer value, missing, integer;
  value.u8(sp::kOk);
  value.str("the value");
  missing.u8(sp::kTimeout);
  missing.strs({"a", "b/c"});
  integer.u8(sp::kOk);
  integer.i64(42);
  write("fuzz_store_reply", "get-value", cmd(sp::kGet) + value.bytes());
  write("fuzz_store_reply", "get-timeout", cmd(sp::kGet) + missing.bytes());
  write("fuzz_store_reply", "wait-timeout", cmd(sp::kWait) + missing.bytes());
  write("fuzz_store_reply", "add", cmd(sp::kAdd) + integer.bytes());
  write("fuzz_store_reply", "compare-set", cmd(sp::kCompareSet) + value.bytes());
  write("fuzz_store_reply", "set-ok", cmd(sp::kSet) + std::string(1, '\0'));
  write("fuzz_store_reply", "set-timeout-status", cmd(sp::kSet) + std::string(1, '\1'));
  write("fuzz_store_reply", "value-too-long", cmd(sp::kGet) + std::string(1, '\0') + std::string("\xff\xff\xff\x7f", 4));
  write("fuzz_store_reply", "greeting-auth", std::string(1, '\x81') + bytesOf(sp::makeGreeting(true, fixedNonce(0x5a))));
  write("fuzz_store_reply", "greeting-open", std::string(1, '\x80') + bytesOf(sp::makeGreeting(false, {})));
  write("fuzz_store_reply", "verdict-valid",
        std::string(1, '\x40') + bytesOf(sp::makeVerdict(true, kSecret, fixedNonce(0x5a), fixedNonce(0xc1))));
  write("fuzz_store_reply", "verdict-refused",
        std::string(1, '\x40') + bytesOf(sp::makeVerdict(false, kSecret, fixedNonce(0x5a), fixedNonce(0xc1))));
}

tcp::Hello hello(std::uint32_t rank, std::uint16_t index, std::uint16_t count) {
  tcp::Hello h{};
  h.magic = tcp::kHelloMagic;
  h.version = tcp::kProtocolVersion;
  h.socketIndex = index;
  h.socketCount = count;
  h.rank = rank;
  h.worldSize = 4;
  h.generation = 1;
  h.setNonce = 0x1234;
  std::strncpy(h.jobId, "fuzz-job", sizeof h.jobId - 1);
  h.jobHash = kumi::fnv1a("fuzz-job");
  h.commHash = kumi::fnv1a("fuzz-comm");
  return h;
}

void tcpHandshakeSeeds() {
  const auto initiator = [](const tcp::Hello& h, const std::string& secret) {
    return bytesOf(h) + bytesOf(tcp::makeHelloProof(secret, fixedNonce(0x5a), fixedNonce(0xc1), h));
  };
  write("fuzz_tcp_handshake", "acceptor-open-valid", std::string(1, '\0') + initiator(hello(1, 0, 2), ""));
  write("fuzz_tcp_handshake", "acceptor-authed-valid", std::string(1, '\2') + initiator(hello(3, 1, 2), kSecret));
  write("fuzz_tcp_handshake", "acceptor-wrong-proof", std::string(1, '\2') + initiator(hello(3, 0, 1), "guess"));
  write("fuzz_tcp_handshake", "acceptor-own-rank", std::string(1, '\0') + initiator(hello(2, 0, 1), ""));
  write("fuzz_tcp_handshake", "acceptor-bad-index", std::string(1, '\0') + initiator(hello(0, 3, 2), ""));
  write("fuzz_tcp_handshake", "acceptor-garbage", std::string(1, '\0') + "SSH-2.0-OpenSSH_9.2\r\n");
  const auto greetingAuthed = tcp::makeGreeting(true, fixedNonce(0x5a));
  tcp::Hello mine{};
  mine.magic = tcp::kHelloMagic;
  mine.version = tcp::kProtocolVersion;
  const tcp::HelloReply accepted{tcp::kHelloMagic, tcp::kAccepted};
  write("fuzz_tcp_handshake", "initiator-authed-accepted",
        std::string(1, '\3') + bytesOf(greetingAuthed) + bytesOf(accepted) +
            bytesOf(tcp::makeReplyProof(kSecret, fixedNonce(0x5a), fixedNonce(0xc1), mine, accepted)));
  write("fuzz_tcp_handshake", "initiator-open-duplicate",
        std::string(1, '\1') + bytesOf(tcp::makeGreeting(false, {})) +
            bytesOf(tcp::HelloReply{tcp::kHelloMagic, tcp::kDuplicate}) + bytesOf(tcp::ReplyProof{}));
  write("fuzz_tcp_handshake", "initiator-secret-mismatch", std::string(1, '\1') + bytesOf(greetingAuthed));
}

void shmLayoutSeeds() {
  // Selectors (peers, slot size, rank), a fragment header, then a segment. A zeroed segment of
  // the right size fails only on the slot size and channel count; the near misses differ by one.
  auto header = [](int peers, int slotSel, int rank) {
    std::string s;
    s += static_cast<char>(peers - 1);
    s += static_cast<char>(slotSel);
    s += static_cast<char>(rank);
    const std::uint16_t frag[4] = {0, 48, 100, 0};  // offset, bytes, op bytes, op offset
    s.append(reinterpret_cast<const char*>(frag), sizeof frag);
    return s;
  };
  for (int peers : {1, 2, 3}) {
    // Rank 1's segment as it writes it, for `peers` local peers of which this rank (0) is one.
    std::vector<int> others;
    for (int r = 0; r <= peers; ++r)
      if (r != 1) others.push_back(r);
    const std::size_t bytes = kumi::shm::segmentBytes(64, peers);
    alignas(64) static std::byte segment[1 << 16];
    std::memset(segment, 0, bytes);
    kumi::shm::writeLayout(segment, 64, 1, others);
    const std::string valid(reinterpret_cast<const char*>(segment), bytes);
    const std::string name = std::to_string(peers) + "-peers";
    write("fuzz_shm_layout", "valid-" + name, header(peers, 0, 0) + valid);
    write("fuzz_shm_layout", "no-channel-for-rank-5-" + name, header(peers, 0, 5) + valid);
    write("fuzz_shm_layout", "short-" + name, header(peers, 0, 0) + valid.substr(0, bytes - 64));
    write("fuzz_shm_layout", "zeroed-" + name, header(peers, 0, 0) + std::string(bytes, '\0'));
  }
  write("fuzz_shm_layout", "tiny", header(2, 1, 1) + std::string(100, '\x01'));
}

void linkModelSeeds() {
  write("fuzz_link_model", "default", kumi::formatLinkModel(kumi::LinkModel{}));
  write("fuzz_link_model", "calibrated",
        "# kumi-bench --calibrate\nintra_latency_us = 0.7\nintra_gbps = 9.5\nintra_overhead_us = 0\n"
        "loopback_latency_us = 14\nloopback_gbps = 2.1\nnic_latency_us = 30 # measured\nnic_gbps = 1.05\n"
        "reduce_gbps = 7.5\ncopy_gbps = 11\ncores_per_node = 2\n");
  write("fuzz_link_model", "cluster",
        "name = v100 128x8 roce\nnodes = 128\nranks_per_node = 8\nnics_per_node = 4\nnic_gbps = 12.5\n"
        "nic_burst_bytes = 1048576\nnic_peak_gbps = 25\noversubscription = 2\n");
  write("fuzz_link_model", "bad-number", "nic_gbps = fast\n");
  write("fuzz_link_model", "bad-key", "nic_bandwidth = 12\n");
  write("fuzz_link_model", "no-equals", "nic_gbps 12\n");
  write("fuzz_link_model", "huge-count", "nodes = 1e300\n");

  kumi::ib::ConnectionRecord record;
  record.where = "mlx5_0:1";
  record.linkLayer = "roce";
  record.gid = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 1};
  record.mtu = 3;
  record.psn = 4242;
  record.slots = 8;
  record.slotBytes = 512 << 10;
  record.ring = 0x7f0000001000ull;
  record.rkey = 0x1234;
  record.qpns = {17, 18, 19};
  write("fuzz_ib_record", "roce-3-qps", kumi::ib::formatRecord(record));
  record.linkLayer = "ib";
  record.lid = 7;
  record.qpns = {0xffffff};
  write("fuzz_ib_record", "ib-lid", kumi::ib::formatRecord(record));
  write("fuzz_ib_record", "ring-overflow", "kumi-ib2 rxe0:1 roce 0 00000000000000000000ffff0a4d0001 3 1 8 524288 "
                                           "18446744073709551616 1 1 17");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR   (tests/fuzz/corpus)\n");
    return 2;
  }
  root = argv[1];
  storeServerSeeds();
  storeReplySeeds();
  tcpHandshakeSeeds();
  shmLayoutSeeds();
  linkModelSeeds();
  return 0;
}
