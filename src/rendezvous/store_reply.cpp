#include "rendezvous/store_reply.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace kumi::store_protocol {

namespace {
// Strings arrive in pieces of at most this much, so a lying length costs at most one piece of
// memory before the stream runs dry.
constexpr std::size_t kPiece = 1u << 20;

std::string readString(ByteSource& in, std::uint32_t limit, const std::string& context, const char* what) {
  std::uint32_t n;
  in.read(&n, 4);
  if (n > limit) fail(kumiRemoteError, context, ": reply holds a ", what, " of ", n, " bytes (the limit is ", limit, ")");
  std::string s;
  while (s.size() < n) {
    const std::size_t take = std::min<std::size_t>(kPiece, n - s.size());
    const std::size_t at = s.size();
    s.resize(at + take);
    in.read(s.data() + at, take);
  }
  return s;
}

std::vector<std::string> readMissing(ByteSource& in, const std::string& context) {
  std::uint32_t n;
  in.read(&n, 4);
  if (n > kMaxKeysPerWait)
    fail(kumiRemoteError, context, ": reply lists ", n, " missing keys (the limit is ", kMaxKeysPerWait, ")");
  std::vector<std::string> missing;
  for (std::uint32_t i = 0; i < n; ++i) missing.push_back(readString(in, kMaxKeyBytes, context, "key"));
  return missing;
}
}  // namespace

Reply readReply(ByteSource& in, Command command, const std::string& context) {
  std::uint8_t status;
  in.read(&status, 1);
  Reply reply;
  reply.status = static_cast<Status>(status);
  const bool mayTimeOut = command == kGet || command == kWait;
  if (status != kOk && !(status == kTimeout && mayTimeOut))
    fail(kumiRemoteError, context, ": the store answered with status ", int(status),
         ", which no reply to this request has (the connection is out of step, or this is not a kumi store)");
  if (status == kTimeout) {
    reply.missing = readMissing(in, context);
    return reply;
  }
  switch (command) {
    case kGet:
    case kCompareSet:
      reply.value = readString(in, kMaxValueBytes, context, "value");
      break;
    case kAdd:
    case kRemove:
    case kCheck:
      in.read(&reply.integer, 8);
      break;
    case kSet:
    case kWait:
    case kPing:
      break;
    default:
      fail(kumiInternalError, context, ": no reply format for store command ", int(command));
  }
  return reply;
}

}  // namespace kumi::store_protocol
