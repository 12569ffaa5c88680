// A call as every message of it carries it (transports/transport.hpp, CallStamp): kind, count,
// data type, op, root and sequence number packed in 16 bytes, with the fields a call does not
// use set to zero, so that two ranks making the same call always stamp alike and ranks that
// disagree on any argument are caught at their first message, at no cost beyond the header.
#pragma once

#include <cstdint>
#include <string>

#include "collectives/schedule.hpp"
#include "transports/transport.hpp"

namespace kumi {

struct CallArgs;

// seq: the collective's number on the communicator (every rank counts alike), or for send and
// recv the message's number between the pair. sender: the sending rank of a send/recv pair.
CallStamp stampCall(const CallArgs& a, std::uint64_t seq, int sender);

// "allreduce count=1024 float32 sum, #17"; for a send/recv pair "send/recv count=8 int32 from
// rank 2, #3 between them". Stamps carry the low 32 bits of the sequence number.
std::string describeStamp(const CallStamp& s);

}  // namespace kumi
