#include "transports/routed_transport.hpp"

#include <algorithm>

namespace kumi {
namespace {
// Slice of a blocking wait while more than one transport has work outstanding.
constexpr int kSliceMs = 1;
}  // namespace

RoutedTransport::RoutedTransport(std::vector<std::unique_ptr<Transport>> transports, std::vector<int> routes)
    : transports_(std::move(transports)), routes_(std::move(routes)), outstanding_(transports_.size(), 0) {}

void RoutedTransport::connect(const std::vector<int>& peers, const Deadline& deadline) {
  for (std::size_t t = 0; t < transports_.size(); ++t) {
    peersOf_.clear();
    for (int p : peers)
      if (routes_[static_cast<std::size_t>(p)] == static_cast<int>(t)) peersOf_.push_back(p);
    if (!peersOf_.empty()) transports_[t]->connect(peersOf_, deadline);
  }
}

void RoutedTransport::setCallStamp(const CallStamp& stamp) {
  for (auto& t : transports_) t->setCallStamp(stamp);
}

void RoutedTransport::postSend(int peer, const void* data, std::size_t bytes, Request* req) {
  ++outstanding_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])];
  to(peer).postSend(peer, data, bytes, req);
}

void RoutedTransport::postSendDevice(int peer, const DeviceMessage& m, std::size_t bytes, Request* req) {
  ++outstanding_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])];
  to(peer).postSendDevice(peer, m, bytes, req);
}

void RoutedTransport::postRecvAny(int peer, void* data, std::size_t bytes, Request* req) {
  ++outstanding_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])];
  to(peer).postRecvAny(peer, data, bytes, req);
}

void RoutedTransport::postRecv(int peer, void* data, std::size_t bytes, Request* req) {
  ++outstanding_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])];
  to(peer).postRecv(peer, data, bytes, req);
}

void RoutedTransport::postRecvDevice(int peer, void* host, void* device, std::size_t bytes, Request* req) {
  ++outstanding_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])];
  to(peer).postRecvDevice(peer, host, device, bytes, req);
}

bool RoutedTransport::progress(std::vector<Request*>& completed) {
  bool moved = false;
  for (std::size_t t = 0; t < transports_.size(); ++t) {
    if (outstanding_[t] == 0) continue;  // nothing of ours there; failures show when we use it
    const std::size_t before = completed.size();
    moved = transports_[t]->progress(completed) || moved;
    outstanding_[t] -= static_cast<long long>(completed.size() - before);
  }
  return moved;
}

void RoutedTransport::waitForEvents(int timeoutMs) {
  std::size_t busy = 0, which = 0;
  for (std::size_t t = 0; t < transports_.size(); ++t)
    if (outstanding_[t] > 0) ++busy, which = t;
  if (busy == 0) {
    // Nothing posted: still let every transport notice failures (closed peers, dead ranks).
    for (auto& t : transports_) t->waitForEvents(0);
    return;
  }
  if (timeoutMs <= 0) {
    // A look without blocking must reach every busy transport: readiness of TCP and RDMA comes
    // only through their event queues, and a spinning rank that looked at shared memory alone
    // would not see its network data until it gave up spinning.
    for (std::size_t t = 0; t < transports_.size(); ++t)
      if (outstanding_[t] > 0) transports_[t]->waitForEvents(0);
    return;
  }
  if (busy == 1) {
    transports_[which]->waitForEvents(timeoutMs);
    return;
  }
  // Several busy: a short wait on one, in turn, and a look at the others.
  turn_ = (turn_ + 1) % transports_.size();
  while (outstanding_[turn_] == 0) turn_ = (turn_ + 1) % transports_.size();
  transports_[turn_]->waitForEvents(std::min(timeoutMs, kSliceMs));
  for (std::size_t t = 0; t < transports_.size(); ++t)
    if (t != turn_) transports_[t]->waitForEvents(0);
}

void RoutedTransport::interrupt() {
  for (auto& t : transports_) t->interrupt();
}

void RoutedTransport::publishFailure(const std::string& story) {
  for (auto& t : transports_) t->publishFailure(story);
}

void RoutedTransport::shutdown() {
  for (auto& t : transports_) t->shutdown();
}

std::uint64_t RoutedTransport::registerBuffer(void* data, std::size_t bytes) {
  for (auto& t : transports_)
    if (std::uint64_t h = t->registerBuffer(data, bytes)) return h;
  return 0;
}

std::uint64_t RoutedTransport::registerDeviceBuffer(void* data, std::size_t bytes, gpu::Device& device, int deviceIndex) {
  for (auto& t : transports_)
    if (std::uint64_t h = t->registerDeviceBuffer(data, bytes, device, deviceIndex)) return h;
  return 0;
}

bool RoutedTransport::deregisterBuffer(std::uint64_t handle) {
  bool known = false;
  for (auto& t : transports_) known = t->deregisterBuffer(handle) || known;
  return known;
}

void RoutedTransport::cancelAll() {
  for (auto& t : transports_) t->cancelAll();
  std::fill(outstanding_.begin(), outstanding_.end(), 0);
}

}  // namespace kumi
