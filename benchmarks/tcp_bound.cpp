// kumi-tcp-bound: what plain TCP over loopback can carry on this machine, with no library in the
// way. Two threads exchange a buffer over one socket pair, one way and both ways at once; a
// 2-rank ring allreduce moves the same bytes as the two-way exchange, so the two-way rate bounds
// any TCP allreduce's busbw here (kumi's, Gloo's or Open MPI's).
//   kumi-tcp-bound [SIZE (default 64M)] [REPEATS (default 5)]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kIo = 1 << 20;  // bytes per send/recv call

void sendAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, p, std::min(n, kIo), MSG_NOSIGNAL);
    if (k <= 0) std::exit(3);
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void recvAll(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t k = ::recv(fd, p, std::min(n, kIo), 0);
    if (k <= 0) std::exit(3);
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

// A connected pair of TCP sockets on 127.0.0.1.
void tcpPair(int fds[2]) {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) || ::listen(l, 1) ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len))
    std::exit(2);
  fds[0] = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fds[0], reinterpret_cast<sockaddr*>(&a), sizeof a)) std::exit(2);
  fds[1] = ::accept(l, nullptr, nullptr);
  ::close(l);
  int one = 1;
  for (int i = 0; i < 2; ++i) ::setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 64u << 20;
  if (argc > 1) {
    char* end = nullptr;
    n = std::strtoull(argv[1], &end, 10);
    if (*end == 'K') n <<= 10;
    if (*end == 'M') n <<= 20;
    if (*end == 'G') n <<= 30;
  }
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  std::vector<char> a(n, 1), b(n, 2), ra(n), rb(n);
  int fds[2];
  tcpPair(fds);
  double oneWay = 0, twoWay = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    std::thread tx([&] { sendAll(fds[0], a.data(), n); });
    recvAll(fds[1], rb.data(), n);
    tx.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    oneWay = std::max(oneWay, static_cast<double>(n) / s / 1e9);
    // Both directions at once: each side sends n and receives n, as each rank of a 2-rank ring
    // allreduce does (n/2 twice each way).
    t0 = std::chrono::steady_clock::now();
    std::thread side([&] {
      std::thread s1([&] { sendAll(fds[1], b.data(), n); });
      recvAll(fds[1], rb.data(), n);
      s1.join();
    });
    std::thread s0([&] { sendAll(fds[0], a.data(), n); });
    recvAll(fds[0], ra.data(), n);
    s0.join();
    side.join();
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    twoWay = std::max(twoWay, static_cast<double>(n) / s / 1e9);
  }
  std::printf("loopback TCP, %zu bytes, best of %d: one way %.2f GB/s, both ways at once %.2f GB/s per direction\n", n,
              repeats, oneWay, twoWay);
  // With four blocking threads on few cores the two-way figure understates small, cache-resident
  // transfers; for messages much larger than the caches it is the ceiling.
  std::printf("=> bound on a 2-rank TCP allreduce busbw at this size: about %.2f GB/s%s\n", twoWay,
              n < (32u << 20) ? " (loose below 32 MiB: blocking threads, not a tuned engine)" : "");
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
