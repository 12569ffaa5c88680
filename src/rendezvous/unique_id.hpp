// kumiUniqueId (kumi.h): a store started in this process and a fresh job id, in 128 bytes that a
// job passes to its ranks by its own means (MPI_Bcast in kumi_mpi.h).
#pragma once

#include <kumi/kumi.h>

#include <string>

namespace kumi {

// Starts a store server on the interface KUMI_SOCKET_IFNAME selects, at a free port (with
// KUMI_SECRET if set), and names it with a random job id.
kumiUniqueId makeUniqueId();
// An id that carries `error` instead: readUniqueId fails with it on every rank given the id.
kumiUniqueId failedUniqueId(const std::string& error);
// Throws kumiInvalidArgument for bytes that are no id, kumiRemoteError for a failed one.
void readUniqueId(const kumiUniqueId& id, std::string* storeAddress, std::string* jobId);

}  // namespace kumi
