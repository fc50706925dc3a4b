// JSON Lines: one flat object per step. The writer escapes; the reader reads back the flat
// objects the suite writes (strings, numbers, booleans, null), which is all the tests and the
// run-all summary need.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portreuse {

std::string json_quote(std::string_view text);

// ["a","b"]: the texts as a JSON array of strings.
std::string json_string_array(const std::vector<std::string>& texts);
// [x,y]: values that are already JSON text (objects, numbers) as one JSON array.
std::string json_array(const std::vector<std::string>& json_values);

class JsonObject {
 public:
  JsonObject& add(std::string_view key, std::string_view value);
  JsonObject& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, long long value);
  JsonObject& add(std::string_view key, int value) { return add(key, static_cast<long long>(value)); }
  JsonObject& add(std::string_view key, unsigned value) { return add(key, static_cast<long long>(value)); }
  JsonObject& add(std::string_view key, double value);
  JsonObject& add(std::string_view key, bool value);
  // A value that is already JSON text (a number kept as text, or a nested array).
  JsonObject& add_raw(std::string_view key, std::string_view json);
  [[nodiscard]] std::string text() const;  // {"k":"v",...} on one line

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

// Reads one flat JSON object. String values are unescaped; other values are kept as their JSON
// text ("42", "true", "null"). Nested values are kept as raw text. nullopt when not an object.
std::optional<std::map<std::string, std::string>> parse_flat_json(std::string_view line);

}  // namespace portreuse
