// The link-model / tuning-file parser (KUMI_TUNING_FILE, kumi-sim cluster descriptions, and the
// model rank 0 shares through the store): any text either parses or is refused with an error,
// and whatever parses survives the round trip that sharing it takes (format, parse again).
#include "collectives/link_model.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kumi::LinkModel m;
  try {
    m = kumi::parseLinkModel(text, "fuzz");
  } catch (const kumi::Error&) {
    return 0;
  }
  // Every rank plans from rank 0's model as sent through the store: it must read back the same.
  const kumi::LinkModel again = kumi::parseLinkModel(kumi::formatLinkModel(m), "fuzz round trip");
  if (!(again == m)) __builtin_trap();
  return 0;
}
