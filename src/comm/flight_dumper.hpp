// On-demand dumps of every flight recorder of the process when a signal arrives
// (KUMI_FLIGHT_RECORDER_SIGNAL=USR2, off by default: a library does not take a signal unasked).
// The handler only writes a byte to a pipe; a thread of the registry's dumper service does the
// writing, so a dump never runs inside the handler and works while every rank's main thread
// hangs in a collective.
#pragma once

#include <memory>
#include <string>

namespace kumi {

class FlightRecorder;

// Parses "USR2", "SIGUSR2" or a number; throws kumiInvalidArgument naming the value otherwise.
int parseSignal(const std::string& text);

// Installs the handler (once per process) and registers the recorder for dumps on that signal.
void dumpOnSignal(int signal, const std::shared_ptr<FlightRecorder>& recorder);

}  // namespace kumi
