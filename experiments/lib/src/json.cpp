#include "portreuse/json.hpp"

#include <array>
#include <cmath>
#include <cstdio>

namespace portreuse {

std::string json_quote(std::string_view text) {
  std::string quoted = "\"";
  for (const char raw : text) {
    const auto character = static_cast<unsigned char>(raw);
    switch (character) {
      case '"': quoted += "\\\""; break;
      case '\\': quoted += "\\\\"; break;
      case '\n': quoted += "\\n"; break;
      case '\r': quoted += "\\r"; break;
      case '\t': quoted += "\\t"; break;
      default:
        if (character < 0x20) {
          std::array<char, 8> escaped{};
          std::snprintf(escaped.data(), escaped.size(), "\\u%04x", character);
          quoted += escaped.data();
        } else {
          quoted += raw;
        }
    }
  }
  return quoted + "\"";
}

std::string json_array(const std::vector<std::string>& json_values) {
  std::string array = "[";
  for (const auto& value : json_values) array += (array.size() > 1 ? "," : "") + value;
  return array + "]";
}

std::string json_string_array(const std::vector<std::string>& texts) {
  std::vector<std::string> quoted;
  quoted.reserve(texts.size());
  for (const auto& text : texts) quoted.push_back(json_quote(text));
  return json_array(quoted);
}

JsonObject& JsonObject::add(std::string_view key, std::string_view value) {
  return add_raw(key, json_quote(value));
}

JsonObject& JsonObject::add(std::string_view key, long long value) {
  return add_raw(key, std::to_string(value));
}

JsonObject& JsonObject::add(std::string_view key, double value) {
  if (!std::isfinite(value)) return add_raw(key, "null");
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.3f", value);
  return add_raw(key, text.data());
}

JsonObject& JsonObject::add(std::string_view key, bool value) {
  return add_raw(key, value ? "true" : "false");
}

JsonObject& JsonObject::add_raw(std::string_view key, std::string_view json) {
  members_.emplace_back(std::string(key), std::string(json));
  return *this;
}

std::string JsonObject::text() const {
  std::string line = "{";
  for (std::size_t index = 0; index < members_.size(); ++index) {
    if (index > 0) line += ",";
    line += json_quote(members_[index].first) + ":" + members_[index].second;
  }
  return line + "}";
}

namespace {

class FlatReader {
 public:
  explicit FlatReader(std::string_view text) : text_(text) {}

  std::optional<std::map<std::string, std::string>> object() {
    std::map<std::string, std::string> members;
    skip_space();
    if (!take('{')) return std::nullopt;
    skip_space();
    if (take('}')) return finish(members);
    for (;;) {
      skip_space();
      auto key = string();
      if (!key) return std::nullopt;
      skip_space();
      if (!take(':')) return std::nullopt;
      skip_space();
      auto value = peek() == '"' ? string() : raw_value();
      if (!value) return std::nullopt;
      members[*key] = *value;
      skip_space();
      if (take('}')) return finish(members);
      if (!take(',')) return std::nullopt;
    }
  }

 private:
  std::optional<std::map<std::string, std::string>> finish(std::map<std::string, std::string>& members) {
    skip_space();
    if (position_ != text_.size()) return std::nullopt;
    return std::move(members);
  }
  [[nodiscard]] char peek() const { return position_ < text_.size() ? text_[position_] : '\0'; }
  bool take(char wanted) {
    if (peek() != wanted) return false;
    ++position_;
    return true;
  }
  void skip_space() {
    while (position_ < text_.size() && (text_[position_] == ' ' || text_[position_] == '\t' ||
                                        text_[position_] == '\n' || text_[position_] == '\r')) {
      ++position_;
    }
  }

  std::optional<std::string> string() {
    if (!take('"')) return std::nullopt;
    std::string value;
    while (position_ < text_.size()) {
      const char character = text_[position_++];
      if (character == '"') return value;
      if (character != '\\') {
        value += character;
        continue;
      }
      if (position_ >= text_.size()) return std::nullopt;
      const char escaped = text_[position_++];
      switch (escaped) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'u': {
          if (position_ + 4 > text_.size()) return std::nullopt;
          const auto code = std::stoul(std::string(text_.substr(position_, 4)), nullptr, 16);
          position_ += 4;
          if (code < 0x80) {
            value += static_cast<char>(code);
          } else if (code < 0x800) {
            value += static_cast<char>(0xC0 | (code >> 6));
            value += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            value += static_cast<char>(0xE0 | (code >> 12));
            value += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            value += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default: value += escaped;
      }
    }
    return std::nullopt;
  }

  // A number, literal, or nested array/object kept as text.
  std::optional<std::string> raw_value() {
    const auto start = position_;
    int depth = 0;
    bool in_string = false;
    while (position_ < text_.size()) {
      const char character = text_[position_];
      if (in_string) {
        if (character == '\\')
          ++position_;
        else if (character == '"')
          in_string = false;
      } else if (character == '"') {
        in_string = true;
      } else if (character == '[' || character == '{') {
        ++depth;
      } else if (character == ']' || character == '}') {
        if (depth == 0) break;
        --depth;
      } else if (character == ',' && depth == 0) {
        break;
      }
      ++position_;
    }
    auto value = text_.substr(start, position_ - start);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    return std::string(value);
  }

  std::string_view text_;
  std::size_t position_ = 0;
};

}  // namespace

std::optional<std::map<std::string, std::string>> parse_flat_json(std::string_view line) {
  return FlatReader(line).object();
}

}  // namespace portreuse
