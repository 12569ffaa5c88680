#include "transports/ib/ib_options.hpp"

#include "core/env.hpp"
#include "core/error.hpp"

namespace kumi::ib {

IbOptions IbOptions::fromEnvironment() {
  IbOptions o;
  if (auto v = envString("KUMI_IB_HCA")) o.hca = HcaFilter::parse(*v);
  if (auto v = envIntIn("KUMI_IB_QPS_PER_CONNECTION", 1, 16)) o.qpsPerConnection = *v;
  if (auto v = envIntIn("KUMI_IB_TC", 0, 255)) o.trafficClass = *v;
  if (auto v = envIntIn("KUMI_IB_SL", 0, 15)) o.serviceLevel = *v;
  if (auto v = envIntIn("KUMI_IB_TIMEOUT", 1, 31)) o.timeout = *v;
  if (auto v = envIntIn("KUMI_IB_RETRY_CNT", 0, 7)) o.retryCount = *v;
  if (auto v = envIntIn("KUMI_IB_GID_INDEX", 0, 65535)) o.gid.forcedIndex = *v;
  if (auto v = envString("KUMI_IB_ADDR_FAMILY")) o.gid.family = parseAddrFamily(*v);
  if (auto v = envString("KUMI_IB_ADDR_RANGE")) o.gid.range = parseAddrRange(*v);
  if (auto v = envIntIn("KUMI_IB_SLOTS", 2, 256)) {
    // A power of two, so that slot numbers (counts modulo 2^32) map to the same slot after a wrap.
    KUMI_REQUIRE_ARG((*v & (*v - 1)) == 0, "KUMI_IB_SLOTS=", *v, " is not a power of two");
    o.slots = *v;
  }
  if (auto v = envBytes("KUMI_IB_BUFFER")) {
    KUMI_REQUIRE_ARG(*v >= 4096 && *v <= (64u << 20), "KUMI_IB_BUFFER=", *v,
                     ": a staging slot must hold 4 KiB to 64 MiB");
    o.slotBytes = static_cast<std::size_t>(*v);
  }
  if (auto v = envString("KUMI_IB_GDR_LEVEL")) o.gdrLevel = parseGdrLevel(*v);
  if (auto v = envIntIn("KUMI_IB_DMABUF", 0, 1)) o.dmabuf = *v == 1;
  return o;
}

}  // namespace kumi::ib
