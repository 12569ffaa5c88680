// The job's shared secret: KUMI_SECRET (the secret itself) or KUMI_SECRET_FILE (a file holding
// it, such as a mounted Kubernetes Secret). Read once per communicator through Config and by the
// tools that host a store (kumirun, kumi-store). Never logged, never in an error message.
#pragma once

#include <string>

namespace kumi {

// "" when neither variable is set. Throws kumiInvalidArgument when both are set, or when the
// file cannot be read or holds nothing (naming the path, never the content).
std::string secretFromEnv();

// The content of path without its trailing newlines ("\n" or "\r\n", as editors and
// `kubectl create secret --from-file` leave them). Throws as above, naming `variable`.
std::string readSecretFile(const std::string& path, const char* variable);

}  // namespace kumi
