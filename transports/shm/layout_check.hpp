// What a rank checks of a peer's shared-memory segment before trusting it to index memory, and
// of each ring slot before copying out of it: pure functions over the mapped bytes, so that the
// fuzzer (tests/fuzz/) drives exactly the checks the transport runs. They are defined in
// shm_transport.cpp, beside the layout they describe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kumi::shm {

// Checks a peer's segment (data, size bytes, as mapped) against the layout of `localPeers`
// channels of slots of `slotBytes` that this rank expects, and returns the index of the channel
// that carries this rank's (myRank's) messages to the peer. Throws kumiSystemError or
// kumiInvalidArgument naming peerRank and path when anything differs.
std::size_t checkPeerLayout(const std::byte* data, std::size_t size, std::size_t slotBytes, int localPeers, int myRank,
                            int peerRank, const std::string& path);

// What checkPeerLayout checks, as the segment's owner writes it into its zero-filled segment
// (segmentBytes(slotBytes, localPeers.size()) bytes): its rank, the slot size, and which peer
// sends on each channel.
void writeLayout(std::byte* data, std::size_t slotBytes, int rank, const std::vector<int>& localPeers);

// Where channel `index` starts in a segment, and the size of a whole segment.
std::size_t channelOffset(std::size_t slotBytes, std::size_t index);
std::size_t segmentBytes(std::size_t slotBytes, int localPeers);

// Whether an inline fragment (offset and length as the sender wrote them in the slot) fits both
// the slot and the receive posted for it (opOffset bytes of opBytes already arrived).
bool inlineFragmentFits(std::uint64_t offset, std::uint64_t bytes, std::size_t slotBytes, std::size_t opOffset,
                        std::size_t opBytes);

}  // namespace kumi::shm
