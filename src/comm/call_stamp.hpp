// A call as every message of it carries it (transports/transport.hpp, CallStamp): kind, count,
// data type, op, root, sequence number and whether its buffers are device memory (device and
// host calls are planned apart, so they may run different schedules) packed in 16 bytes, with
// the fields a call does not use set to zero, so that two ranks making the same call always
// stamp alike and ranks that disagree on any argument are caught at their first message, at no
// cost beyond the header.
#pragma once

#include <cstdint>
#include <string>

#include "collectives/schedule.hpp"
#include "transports/transport.hpp"

namespace kumi {

struct CallArgs;

// seq: the collective's number on the communicator (every rank counts alike), or for send and
// recv the message's number between the pair. sender: the sending rank of a send/recv pair.
// device: the call's buffers are device memory.
CallStamp stampCall(const CallArgs& a, std::uint64_t seq, int sender, bool device = false);

// Whether two stamps are of the same call but for the kind of memory (device or host).
bool differsOnlyInMemory(const CallStamp& a, const CallStamp& b);

// "allreduce count=1024 float32 sum, #17" ("..., device buffers, #17" for device memory); for a
// send/recv pair "send/recv count=8 int32 from rank 2, #3 between them". Stamps carry the low 32
// bits of the sequence number.
std::string describeStamp(const CallStamp& s);

}  // namespace kumi
