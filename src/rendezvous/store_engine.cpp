#include "rendezvous/store_engine.hpp"

#include <algorithm>
#include <cstdlib>

namespace kumi {
namespace sp = store_protocol;

namespace {
// Replies may pile up this far before the server stops parsing a client's requests. A real
// client sends one request and reads its reply, so only a client that never reads gets here.
constexpr std::size_t kMaxUnsentReplyBytes = 1u << 20;
}  // namespace

bool StoreEngine::allPresent(const std::vector<std::string>& keys) const {
  for (const auto& k : keys)
    if (!data_.count(k)) return false;
  return true;
}

void StoreEngine::answerWaiter(const Waiter& w, bool timedOut) {
  sp::Writer r;
  if (timedOut) {
    std::vector<std::string> missing;
    for (const auto& k : w.keys)
      if (!data_.count(k)) missing.push_back(k);
    r.u8(sp::kTimeout);
    r.strs(missing);
  } else {
    r.u8(sp::kOk);
    if (w.isGet) r.str(data_.at(w.keys.front()));
  }
  w.session->out += r.bytes();
  w.session->parked = false;
}

void StoreEngine::removeWaiter(std::list<Waiter>::iterator it) {
  for (const auto& k : it->keys) {
    auto m = waitersByKey_.find(k);
    if (m == waitersByKey_.end()) continue;
    auto& v = m->second;
    v.erase(std::remove(v.begin(), v.end(), it), v.end());
    if (v.empty()) waitersByKey_.erase(m);
  }
  waiters_.erase(it);
}

void StoreEngine::keyChanged(const std::string& key, std::vector<Session*>& touched) {
  auto m = waitersByKey_.find(key);
  if (m == waitersByKey_.end()) return;
  auto candidates = m->second;  // copy: removeWaiter edits the index
  for (auto it : candidates) {
    if (!allPresent(it->keys)) continue;
    answerWaiter(*it, false);
    touched.push_back(it->session);
    removeWaiter(it);
  }
}

void StoreEngine::forget(Session* s) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto next = std::next(it);
    if (it->session == s) removeWaiter(it);
    it = next;
  }
}

void StoreEngine::execute(Session& s, sp::Request& q, std::vector<Session*>& touched) {
  sp::Writer w;
  switch (q.command) {
    case sp::kSet: {
      data_[q.keys[0]] = std::move(q.value);
      w.u8(sp::kOk);
      s.out += w.bytes();
      keyChanged(q.keys[0], touched);
      break;
    }
    case sp::kGet:
    case sp::kWait: {
      Waiter wt{&s, std::move(q.keys), Clock::now() + std::chrono::milliseconds(q.timeoutMs), q.command == sp::kGet};
      if (allPresent(wt.keys)) {
        answerWaiter(wt, false);
      } else {
        s.parked = true;
        auto it = waiters_.insert(waiters_.end(), std::move(wt));
        // Index each distinct key once, even if the request repeats it.
        std::vector<std::string> distinct = it->keys;
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        for (const auto& k : distinct) waitersByKey_[k].push_back(it);
      }
      break;
    }
    case sp::kAdd: {
      std::int64_t v = 0;
      auto it = data_.find(q.keys[0]);
      if (it != data_.end()) v = std::strtoll(it->second.c_str(), nullptr, 10);
      // Wraps like the counters it models instead of overflowing (undefined for int64_t).
      v = static_cast<std::int64_t>(static_cast<std::uint64_t>(v) + static_cast<std::uint64_t>(q.delta));
      data_[q.keys[0]] = std::to_string(v);
      w.u8(sp::kOk);
      w.i64(v);
      s.out += w.bytes();
      keyChanged(q.keys[0], touched);
      break;
    }
    case sp::kCompareSet: {
      const std::string& k = q.keys[0];
      auto it = data_.find(k);
      bool changed = false;
      if ((it == data_.end() && q.expected.empty()) || (it != data_.end() && it->second == q.expected)) {
        data_[k] = q.value;
        changed = true;
      }
      w.u8(sp::kOk);
      auto now = data_.find(k);
      w.str(now != data_.end() ? now->second : std::string());
      s.out += w.bytes();
      if (changed) keyChanged(k, touched);
      break;
    }
    case sp::kRemove:
      w.u8(sp::kOk);
      w.i64(data_.erase(q.keys[0]) ? 1 : 0);
      s.out += w.bytes();
      break;
    case sp::kCheck:
      w.u8(sp::kOk);
      w.i64(allPresent(q.keys) ? 1 : 0);
      s.out += w.bytes();
      break;
    case sp::kPing:
      w.u8(sp::kOk);
      s.out += w.bytes();
      break;
  }
}

bool StoreEngine::handleInput(Session& s, std::vector<Session*>& touched) {
  std::size_t pos = 0;
  bool ok = true;
  while (!s.parked && pos < s.in.size() && s.out.size() <= kMaxUnsentReplyBytes) {
    sp::Request q;
    std::size_t used = 0;
    const auto result = sp::parseRequest(s.in.data() + pos, s.in.size() - pos, &q, &used);
    if (result == sp::ParseResult::kIncomplete) break;
    if (result == sp::ParseResult::kBad) {
      ok = false;
      break;
    }
    pos += used;
    execute(s, q, touched);
  }
  s.in.erase(0, pos);
  return ok;
}

void StoreEngine::expire(Clock::time_point now, std::vector<Session*>& touched) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto next = std::next(it);
    if (it->deadline <= now) {
      answerWaiter(*it, true);
      touched.push_back(it->session);
      removeWaiter(it);
    }
    it = next;
  }
}

int StoreEngine::msUntilNextExpiry(Clock::time_point now, int cap) const {
  long long best = cap;
  for (const auto& w : waiters_) {
    const long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(w.deadline - now).count() + 1;
    best = std::max<long long>(0, std::min(best, ms));
  }
  return static_cast<int>(best);
}

}  // namespace kumi
