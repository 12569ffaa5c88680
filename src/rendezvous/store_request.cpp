#include "rendezvous/store_request.hpp"

namespace kumi::store_protocol {

ParseResult parseRequest(const char* data, std::size_t size, Request* request, std::size_t* consumed) {
  Reader r(data, size);
  Request q;
  std::uint8_t cmd;
  if (!r.u8(cmd)) return ParseResult::kIncomplete;
  q.command = static_cast<Command>(cmd);
  bool complete = false;
  switch (cmd) {
    case kSet:
      q.keys.resize(1);
      complete = r.str(q.keys[0], kMaxKeyBytes) && r.str(q.value, kMaxValueBytes);
      break;
    case kGet:
      q.keys.resize(1);
      complete = r.str(q.keys[0], kMaxKeyBytes) && r.u32(q.timeoutMs);
      break;
    case kWait:
      complete = r.strs(q.keys, kMaxKeyBytes) && r.u32(q.timeoutMs);
      break;
    case kAdd:
      q.keys.resize(1);
      complete = r.str(q.keys[0], kMaxKeyBytes) && r.i64(q.delta);
      break;
    case kCompareSet:
      q.keys.resize(1);
      complete = r.str(q.keys[0], kMaxKeyBytes) && r.str(q.expected, kMaxValueBytes) && r.str(q.value, kMaxValueBytes);
      break;
    case kRemove:
      q.keys.resize(1);
      complete = r.str(q.keys[0], kMaxKeyBytes);
      break;
    case kCheck:
      complete = r.strs(q.keys, kMaxKeyBytes);
      break;
    case kPing:
      complete = true;
      break;
    default:
      return ParseResult::kBad;
  }
  if (r.tooLarge()) return ParseResult::kBad;
  if (!complete) return size > kMaxRequestBytes ? ParseResult::kBad : ParseResult::kIncomplete;
  *consumed = r.consumed(data);
  *request = std::move(q);
  return ParseResult::kOk;
}

}  // namespace kumi::store_protocol
