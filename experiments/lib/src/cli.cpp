#include "portreuse/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "portreuse/narrator.hpp"  // wrap_text
#include "portreuse/ports.hpp"

namespace portreuse {

std::optional<std::string> ParsedArgs::value(std::string_view name) const {
  const auto found = values.find(std::string(name));
  if (found == values.end()) return std::nullopt;
  return found->second;
}

CommandLine::CommandLine(std::string program, std::string synopsis, std::string description,
                         std::vector<OptionSpec> options, std::size_t max_positional)
    : program_(std::move(program)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)),
      options_(std::move(options)),
      max_positional_(max_positional) {
  options_.push_back({"--help", "", "show this help and exit"});
}

std::variant<ParsedArgs, UsageError> CommandLine::parse(int argc, const char* const* argv) const {
  ParsedArgs parsed;
  for (int index = 1; index < argc; ++index) {
    std::string argument = argv[index];
    if (argument.size() > 1 && argument[0] == '-' && argument != "-") {
      std::optional<std::string> inline_value;
      if (const auto equals = argument.find('='); equals != std::string::npos && argument.rfind("--", 0) == 0) {
        inline_value = argument.substr(equals + 1);
        argument = argument.substr(0, equals);
      }
      if (argument == "-h") argument = "--help";
      const OptionSpec* spec = nullptr;
      for (const auto& option : options_) {
        if (option.name == argument) spec = &option;
      }
      if (spec == nullptr) return UsageError{"unknown option " + argument};
      if (spec->value_name.empty()) {
        if (inline_value) return UsageError{"option " + argument + " takes no value"};
        parsed.values[argument] = "";
        continue;
      }
      if (!inline_value) {
        if (index + 1 >= argc) return UsageError{"option " + argument + " needs a value (" + spec->value_name + ")"};
        inline_value = argv[++index];
      }
      parsed.values[argument] = *inline_value;
      continue;
    }
    if (parsed.positional.size() >= max_positional_) return UsageError{"unexpected argument '" + argument + "'"};
    parsed.positional.push_back(argument);
  }
  return parsed;
}

namespace {

// Help text fits 80 columns: `text` wrapped at word boundaries, the first line after `lead`,
// the others indented by `indent` spaces.
std::string wrapped(const std::string& lead, std::string_view text, std::size_t indent) {
  constexpr std::size_t kColumns = 80;
  const std::size_t width = std::max<std::size_t>(20, kColumns - std::max(lead.size(), indent));
  std::string out = lead;
  bool first = true;
  for (const auto& line : wrap_text(text, width)) {
    if (!first) out += "\n" + std::string(indent, ' ');
    out += line;
    first = false;
  }
  return out + "\n";
}

}  // namespace

std::string CommandLine::usage() const {
  const std::string lead = "Usage: " + program_ + " ";
  std::string text = wrapped(lead, synopsis_, lead.size());
  if (!description_.empty()) {
    text += "\n";
    // Lines that begin with spaces (a list of steps) are kept as they are; the others are wrapped.
    std::size_t start = 0;
    while (start <= description_.size()) {
      auto end = description_.find('\n', start);
      if (end == std::string::npos) end = description_.size();
      const std::string_view line(description_.data() + start, end - start);
      if (line.empty() || line.front() == ' ' || line.size() <= 80) {
        text += std::string(line) + "\n";
      } else {
        text += wrapped("", line, 0);
      }
      start = end + 1;
    }
  }
  text += "\nOptions:\n";
  for (const auto& option : options_) {
    std::string left = "  " + option.name + (option.value_name.empty() ? "" : " " + option.value_name);
    if (left.size() < 22)
      left.resize(22, ' ');
    else
      left += "  ";
    text += wrapped(left, option.help, 22);
  }
  return text;
}

std::variant<ParsedArgs, int> CommandLine::parse_or_exit(int argc, const char* const* argv) const {
  auto parsed = parse(argc, argv);
  if (const auto* error = std::get_if<UsageError>(&parsed)) return usage_error(error->message);
  auto& args = std::get<ParsedArgs>(parsed);
  if (args.has("--help")) {
    std::cout << usage();
    return 0;
  }
  return std::move(args);
}

int CommandLine::usage_error(std::string_view message) const {
  std::cerr << program_ << ": " << escape_controls(message) << " (see " << program_ << " --help)\n";
  return kExitUsage;
}

std::optional<std::uint16_t> CommandLine::required_port(const ParsedArgs& args, std::string_view option) const {
  const auto text = args.value(option);
  if (!text) {
    usage_error("missing " + std::string(option) + " P");
    return std::nullopt;
  }
  const auto port = parse_port(*text);
  if (!port) usage_error(bad_port_message(*text));
  return port;
}

std::string bad_port_message(std::string_view text) {
  return "bad port '" + std::string(text) + "' (want 1 to 65535)";
}

std::string escape_controls(std::string_view text) {
  std::string shown;
  shown.reserve(text.size());
  for (const char character : text) {
    const auto byte = static_cast<unsigned char>(character);
    if (byte == '\n') {
      shown += "\\n";
    } else if (byte == '\r') {
      shown += "\\r";
    } else if (byte == '\t') {
      shown += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      shown += "\\x";
      shown += kHex[byte >> 4];
      shown += kHex[byte & 0x0f];
    } else {
      shown += character;
    }
  }
  return shown;
}

bool colour_wanted(bool disabled_by_flag, int fd) {
  if (disabled_by_flag) return false;
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color != nullptr && no_color[0] != '\0') return false;
  return ::isatty(fd) == 1;
}

}  // namespace portreuse
