// A small streaming JSON writer for reports (kumi-topo --json): indented output, escaped strings,
// commas placed by the writer so that callers cannot produce invalid JSON by forgetting one.
#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <vector>

namespace kumi::topo {

class JsonWriter {
 public:
  JsonWriter& beginObject() { return open('{'); }
  JsonWriter& endObject() { return close('}'); }
  JsonWriter& beginArray() { return open('['); }
  JsonWriter& endArray() { return close(']'); }
  JsonWriter& key(std::string_view name);

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }  // not the bool overload
  JsonWriter& value(bool b) { return raw(b ? "true" : "false"); }
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonWriter& value(T v) {
    return raw(std::to_string(v));
  }
  // Shortest text that reads back to the same double; NaN and infinities (not JSON) as null.
  JsonWriter& value(double v);
  JsonWriter& null() { return raw("null"); }

  template <class T>
  JsonWriter& field(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

  // The document; complete once every container opened has been closed.
  const std::string& str() const { return out_; }

 private:
  JsonWriter& open(char bracket);
  JsonWriter& close(char bracket);
  JsonWriter& raw(std::string_view token);
  void beforeItem();  // comma, newline and indentation before an array item or a key

  std::string out_;
  std::vector<int> counts_;  // items written so far in each open container
  bool afterKey_ = false;
};

}  // namespace kumi::topo
