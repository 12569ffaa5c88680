#include "launch/hostlist.hpp"

#include <cctype>

#include "core/error.hpp"
#include "launch/launcher_table.hpp"

namespace kumi::launch {

namespace {

bool allDigits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// Splits at commas that are outside brackets; refuses unbalanced or nested brackets.
std::vector<std::string> splitTopLevel(const std::string& list, const std::string& what) {
  std::vector<std::string> items;
  std::string cur;
  bool inside = false;
  for (char c : list) {
    if (c == '[') {
      if (inside) fail(kumiInvalidArgument, what, "='", list, "': nested '['");
      inside = true;
    } else if (c == ']') {
      if (!inside) fail(kumiInvalidArgument, what, "='", list, "': ']' without '['");
      inside = false;
    } else if (c == ',' && !inside) {
      items.push_back(cur);
      cur.clear();
      continue;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      fail(kumiInvalidArgument, what, "='", list, "': blank inside the list");
    }
    cur += c;
  }
  if (inside) fail(kumiInvalidArgument, what, "='", list, "': '[' without ']'");
  items.push_back(cur);
  for (const auto& item : items)
    if (item.empty()) fail(kumiInvalidArgument, what, "='", list, "': empty host name");
  return items;
}

// "01-03,07" -> {"01", "02", "03", "07"}.
std::vector<std::string> expandBracket(const std::string& body, const std::string& list, const std::string& what,
                                       std::size_t limit) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto comma = body.find(',', start);
    std::string part = body.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto dash = part.find('-');
    std::string lo = part.substr(0, dash);
    std::string hi = dash == std::string::npos ? lo : part.substr(dash + 1);
    if (!allDigits(lo) || !allDigits(hi) || lo.size() > 18 || hi.size() > 18)
      fail(kumiInvalidArgument, what, "='", list, "': '[", body, "]' holds '", part,
           "', not a number or a range a-b");
    long long a = std::stoll(lo), b = std::stoll(hi);
    if (a > b) fail(kumiInvalidArgument, what, "='", list, "': range ", part, " runs backwards");
    for (long long v = a; v <= b; ++v) {
      std::string digits = std::to_string(v);
      if (digits.size() < lo.size()) digits.insert(0, lo.size() - digits.size(), '0');
      out.push_back(digits);
      if (out.size() > limit) fail(kumiInvalidArgument, what, "='", list, "': more than ", limit, " hosts");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> expandHostlist(const std::string& list, const std::string& what, std::size_t limit) {
  if (list.empty()) fail(kumiInvalidArgument, what, " is empty");
  std::vector<std::string> hosts;
  for (const std::string& item : splitTopLevel(list, what)) {
    std::vector<std::string> names{""};
    std::size_t pos = 0;
    while (pos < item.size()) {
      auto open = item.find('[', pos);
      std::string literal = item.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      for (auto& n : names) n += literal;
      if (open == std::string::npos) break;
      auto close = item.find(']', open);
      std::vector<std::string> suffixes = expandBracket(item.substr(open + 1, close - open - 1), list, what, limit);
      std::vector<std::string> next;
      for (const auto& n : names)
        for (const auto& s : suffixes) {
          next.push_back(n + s);
          if (hosts.size() + next.size() > limit)
            fail(kumiInvalidArgument, what, "='", list, "': more than ", limit, " hosts");
        }
      names = std::move(next);
      pos = close + 1;
    }
    hosts.insert(hosts.end(), names.begin(), names.end());
    if (hosts.size() > limit) fail(kumiInvalidArgument, what, "='", list, "': more than ", limit, " hosts");
  }
  return hosts;
}

std::vector<long long> expandTaskCounts(const std::string& list, const std::string& what, std::size_t limit) {
  std::vector<long long> out;
  std::size_t start = 0;
  for (;;) {
    auto comma = list.find(',', start);
    std::string part = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    long long repeat = 1;
    auto paren = part.find('(');
    if (paren != std::string::npos) {
      if (part.size() < paren + 4 || part.compare(paren, 2, "(x") != 0 || part.back() != ')')
        fail(kumiInvalidArgument, what, "='", list, "': '", part, "' is not N or N(xR)");
      repeat = parseNumber(what + " repeat", part.substr(paren + 2, part.size() - paren - 3), 1, 1 << 20);
      part = part.substr(0, paren);
    }
    long long n = parseNumber(what, part, 1, 1 << 20);
    if (out.size() + static_cast<std::size_t>(repeat) > limit)
      fail(kumiInvalidArgument, what, "='", list, "': more than ", limit, " nodes");
    out.insert(out.end(), static_cast<std::size_t>(repeat), n);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace kumi::launch
