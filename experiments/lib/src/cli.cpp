#include "portreuse/cli.hpp"

#include <unistd.h>

#include <cstdlib>

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

std::string CommandLine::usage() const {
  std::string text = "Usage: " + program_ + " " + synopsis_ + "\n";
  if (!description_.empty()) text += "\n" + description_ + "\n";
  text += "\nOptions:\n";
  for (const auto& option : options_) {
    std::string left = "  " + option.name + (option.value_name.empty() ? "" : " " + option.value_name);
    if (left.size() < 22)
      left.resize(22, ' ');
    else
      left += "  ";
    text += left + option.help + "\n";
  }
  return text;
}

bool colour_wanted(bool disabled_by_flag, int fd) {
  if (disabled_by_flag) return false;
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color != nullptr && no_color[0] != '\0') return false;
  return ::isatty(fd) == 1;
}

}  // namespace portreuse
