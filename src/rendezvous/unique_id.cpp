#include "rendezvous/unique_id.hpp"

#include <cstring>
#include <memory>

#include "core/auth.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/registry.hpp"
#include "core/secret.hpp"
#include "core/socket.hpp"
#include "core/strings.hpp"
#include "rendezvous/tcp_store_server.hpp"

namespace kumi {

namespace {
// Layout: magic, then NUL-terminated fields. A failed id: the other magic, then the message.
constexpr char kMagic[] = "kumi-id1";
constexpr char kFailed[] = "kumi-err";
constexpr std::size_t kMagicBytes = 8;

kumiUniqueId pack(const char* magic, const std::string& a, const std::string& b) {
  kumiUniqueId id{};
  std::memcpy(id.internal, magic, kMagicBytes);
  std::size_t room = sizeof id.internal - kMagicBytes;
  std::string body = a + '\0' + b;
  std::memcpy(id.internal + kMagicBytes, body.data(), std::min(body.size(), room - 1));
  return id;
}
}  // namespace

kumiUniqueId makeUniqueId() {
  std::string ifname = envString("KUMI_SOCKET_IFNAME").value_or("");
  SockAddr where = chooseListenAddress(ifname, nullptr);
  auto server = std::make_shared<TcpStoreServer>(where, secretFromEnv());
  server->start();
  const std::string address = server->address().str();
  // Held like the store rank 0 serves: it lives as long as the process.
  Registry::instance().service<TcpStoreServer>("store-server:" + address, [&] { return server; });
  std::uint32_t r[2];
  auth::randomBytes(r, sizeof r);
  const std::string job = "id-" + hex32(r[0]) + hex32(r[1]);
  KUMI_INFO("unique id: store at ", address, ", job ", job);
  if (address.size() + job.size() + 2 > sizeof(kumiUniqueId::internal) - kMagicBytes)
    fail(kumiInternalError, "unique id: the store address ", address, " does not fit");
  return pack(kMagic, address, job);
}

kumiUniqueId failedUniqueId(const std::string& error) { return pack(kFailed, error, ""); }

void readUniqueId(const kumiUniqueId& id, std::string* storeAddress, std::string* jobId) {
  const char* body = id.internal + kMagicBytes;
  const std::size_t room = sizeof id.internal - kMagicBytes;
  if (std::memcmp(id.internal, kFailed, kMagicBytes) == 0)
    fail(kumiRemoteError, "the unique id was made by a process that failed: ", std::string(body, ::strnlen(body, room)));
  KUMI_REQUIRE_ARG(std::memcmp(id.internal, kMagic, kMagicBytes) == 0,
                   "kumiUniqueId: these bytes are not an id made by kumiGetUniqueId (not initialised, or damaged in transit)");
  std::size_t a = ::strnlen(body, room);
  KUMI_REQUIRE_ARG(a > 0 && a + 1 < room, "kumiUniqueId: damaged (no store address)");
  std::size_t b = ::strnlen(body + a + 1, room - a - 1);
  KUMI_REQUIRE_ARG(b > 0 && a + 1 + b < room, "kumiUniqueId: damaged (no job id)");
  *storeAddress = std::string(body, a);
  *jobId = std::string(body + a + 1, b);
}

}  // namespace kumi
