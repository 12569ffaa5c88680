// One store request, parsed from the bytes a client sent: the whole of the server's input
// validation, as a pure function (the fuzzer drives it; tests/fuzz/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rendezvous/store_protocol.hpp"

namespace kumi::store_protocol {

struct Request {
  Command command = kPing;
  std::vector<std::string> keys;  // one for set, get, add, compare-set, remove; any for wait, check
  std::string value;              // set: the value; compare-set: the desired value
  std::string expected;           // compare-set
  std::int64_t delta = 0;         // add
  std::uint32_t timeoutMs = 0;    // get, wait
};

enum class ParseResult {
  kIncomplete,  // the bytes end inside a request: wait for more
  kBad,         // unknown command or a field over its limit: drop the client
  kOk,          // *request is filled and *consumed bytes make it up
};

ParseResult parseRequest(const char* data, std::size_t size, Request* request, std::size_t* consumed);

}  // namespace kumi::store_protocol
