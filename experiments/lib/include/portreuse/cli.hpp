// Command-line parsing shared by every program: the same flags mean the same thing everywhere,
// and bad input always gets one line naming the problem, how to get the help, and exit status 2.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace portreuse {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitCouldNotRun = 1;

struct OptionSpec {
  std::string name;        // "--port"
  std::string value_name;  // "P"; empty for a flag without value
  std::string help;
};

struct ParsedArgs {
  std::map<std::string, std::string> values;  // "--port" -> "9999"; flags map to ""
  std::vector<std::string> positional;

  [[nodiscard]] bool has(std::string_view name) const { return values.count(std::string(name)) > 0; }
  [[nodiscard]] std::optional<std::string> value(std::string_view name) const;
};

struct UsageError {
  std::string message;  // one line: "unknown option --frobnicate"
};

class CommandLine {
 public:
  CommandLine(std::string program, std::string synopsis, std::string description, std::vector<OptionSpec> options,
              std::size_t max_positional = 0);

  // "--help" is always accepted and recorded like any flag.
  [[nodiscard]] std::variant<ParsedArgs, UsageError> parse(int argc, const char* const* argv) const;
  [[nodiscard]] std::string usage() const;
  [[nodiscard]] const std::string& program() const { return program_; }

  // The arguments, or the exit status to return at once: 0 after --help (the usage on stdout),
  // 2 after bad input (one line naming the problem and pointing to --help, on stderr).
  [[nodiscard]] std::variant<ParsedArgs, int> parse_or_exit(int argc, const char* const* argv) const;
  // "program: message (see program --help)" on stderr, control characters escaped: one line,
  // not the whole usage. Returns 2 for main() to return.
  int usage_error(std::string_view message) const;
  // The port a required option names; nullopt after the usage error for a missing or bad value.
  [[nodiscard]] std::optional<std::uint16_t> required_port(const ParsedArgs& args, std::string_view option) const;

 private:
  std::string program_;
  std::string synopsis_;
  std::string description_;
  std::vector<OptionSpec> options_;
  std::size_t max_positional_;
};

// The one wording for a port argument that is not 1..65535.
std::string bad_port_message(std::string_view text);

// Text from a user or a peer, made safe for a terminal: control characters (and DEL) as \n, \r,
// \t or \xHH, so that it stays on one line and cannot move the cursor or retitle the window.
std::string escape_controls(std::string_view text);

// Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org).
bool colour_wanted(bool disabled_by_flag, int fd);

}  // namespace portreuse
