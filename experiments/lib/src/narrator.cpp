#include "portreuse/narrator.hpp"

#include <unistd.h>

#include <iostream>
#include <sstream>

#include "portreuse/errors.hpp"

namespace portreuse {
namespace {

constexpr std::size_t kWidth = 80;
constexpr std::size_t kActorWidth = 15;

const char* colour_code(Tone tone) {
  switch (tone) {
    case Tone::good: return "\033[32m";
    case Tone::bad: return "\033[31m";
    case Tone::note: return "\033[33m";
    case Tone::heading: return "\033[1;36m";
    case Tone::dim: return "\033[2m";
    case Tone::plain: return "";
  }
  return "";
}

}  // namespace

Narrator::Narrator(std::ostream& out, bool enabled, bool colour) : out_(out), enabled_(enabled), colour_(colour) {}

std::string Narrator::paint(std::string_view text, Tone tone) const {
  if (!colour_ || tone == Tone::plain) return std::string(text);
  return std::string(colour_code(tone)) + std::string(text) + "\033[0m";
}

void Narrator::banner(std::string_view number, std::string_view title) const {
  if (!enabled_) return;
  std::string heading = "Experiment " + std::string(number) + ": " + std::string(title);
  std::string rule(std::max<std::size_t>(heading.size(), 40), '=');
  out_ << '\n'
       << paint(rule, Tone::heading) << '\n'
       << paint(heading, Tone::heading) << '\n'
       << paint(rule, Tone::heading) << '\n'
       << std::flush;
}

void Narrator::step_heading(std::string_view step_id, std::string_view preview) const {
  if (!enabled_) return;
  out_ << '\n' << paint("--- step " + std::string(step_id) + " ---", Tone::heading) << '\n';
  for (const auto& row : wrap_text(preview, kWidth - 2)) out_ << "  " << row << '\n';
  out_ << std::flush;
}

void Narrator::line(std::string_view actor, std::string_view text) const {
  if (!enabled_) return;
  std::string tag = actor.empty() ? std::string() : "[" + std::string(actor) + "]";
  if (tag.size() < kActorWidth) tag.resize(kActorWidth, ' ');
  // Wrapped at word boundaries to 80 columns, continuation lines under the text. Colour codes
  // take no room on screen, so the width is measured without them.
  const std::size_t indent = 2 + std::max(tag.size(), kActorWidth) + 1;
  const std::size_t width = kWidth > indent + 20 ? kWidth - indent : 20;
  std::string visible;
  std::string colour_prefix;
  std::string colour_suffix;
  if (text.size() > 4 && text.substr(0, 2) == "\033[") {
    const auto end = text.find('m');
    const auto reset = text.rfind("\033[0m");
    if (end != std::string_view::npos && reset != std::string_view::npos && reset > end) {
      colour_prefix = std::string(text.substr(0, end + 1));
      colour_suffix = "\033[0m";
      visible = std::string(text.substr(end + 1, reset - end - 1));
    }
  }
  if (colour_prefix.empty()) visible = std::string(text);
  // A line that fits keeps its own spacing (the socket table's columns).
  const auto rows = visible.size() <= width ? std::vector<std::string>{visible} : wrap_text(visible, width);
  if (rows.empty() || visible.empty()) {
    out_ << "  " << paint(tag, Tone::dim) << '\n' << std::flush;
    return;
  }
  for (std::size_t index = 0; index < rows.size(); ++index) {
    if (index == 0) {
      out_ << "  " << paint(tag, Tone::dim) << ' ';
    } else {
      out_ << std::string(indent, ' ');
    }
    out_ << colour_prefix << rows[index] << colour_suffix << '\n';
  }
  out_ << std::flush;
}

void Narrator::call(std::string_view actor, std::string_view call_text, std::error_code outcome) const {
  if (!enabled_) return;
  line(actor, std::string(call_text) + " ... " + paint(describe_outcome(outcome), outcome ? Tone::bad : Tone::good));
}

void Narrator::paragraph(std::string_view label, std::string_view text, Tone tone) const {
  if (!enabled_) return;
  const std::string head = "  " + std::string(label) + (label.empty() ? "" : " ");
  const std::string indent(head.size(), ' ');
  const auto rows = wrap_text(text, kWidth - head.size());
  for (std::size_t index = 0; index < rows.size(); ++index) {
    out_ << (index == 0 ? paint(head, Tone::heading) : indent) << paint(rows[index], tone) << '\n';
  }
  out_ << std::flush;
}

void Narrator::table(std::string_view actor, std::string_view caption, const std::vector<std::string>& rows) const {
  if (!enabled_) return;
  line(actor, caption);
  if (rows.empty()) line("", "  (no sockets)");
  // Rows keep their columns: under the text when they fit there, else further left.
  for (const auto& row : rows) {
    const std::size_t indent = 2 + kActorWidth + 3 + row.size() <= kWidth ? 2 + kActorWidth + 3 : 4;
    if (indent + row.size() <= kWidth) {
      out_ << std::string(indent, ' ') << row << '\n';
      continue;
    }
    // Too long even further left: broken at the last space that fits, the columns of the first
    // part kept as they are, the rest wrapped and indented more.
    const auto space = row.rfind(' ', kWidth - indent);
    const auto cut = space == std::string::npos || space == 0 ? row.size() : space;
    out_ << std::string(indent, ' ') << row.substr(0, cut) << '\n';
    for (const auto& piece : wrap_text(row.substr(cut), kWidth - indent - 2)) {
      out_ << std::string(indent + 2, ' ') << piece << '\n';
    }
  }
  out_ << std::flush;
}

void Narrator::blank() const {
  if (enabled_) out_ << '\n' << std::flush;
}

void Narrator::pause(std::string_view preview) const {
  if (!enabled_) return;
  // Wrapped to 80 columns like the rest, with room for the prompt after the last line.
  const std::string head = "  next: ";
  const std::string prompt = "  [Enter] ";
  const auto rows = wrap_text(preview, kWidth - head.size() - prompt.size());
  for (std::size_t index = 0; index < rows.size(); ++index) {
    out_ << (index == 0 ? paint(head, Tone::note) : std::string(head.size(), ' ')) << rows[index]
         << (index + 1 == rows.size() ? "" : "\n");
  }
  out_ << paint(prompt, Tone::note) << std::flush;
  std::string ignored;
  // A terminal echoes the Enter; input from a pipe or a file does not, and without this newline
  // the next output would run on after "[Enter]", past 80 columns.
  if (!std::getline(std::cin, ignored) || ::isatty(STDIN_FILENO) != 1) out_ << '\n';
  out_ << std::flush;
}

std::string server_actor(pid_t pid) {
  return "server " + std::to_string(pid);
}

std::vector<std::string> wrap_text(std::string_view text, std::size_t width) {
  std::vector<std::string> rows;
  std::istringstream words{std::string(text)};
  std::string word;
  std::string row;
  while (words >> word) {
    if (!row.empty() && row.size() + 1 + word.size() > width) {
      rows.push_back(row);
      row.clear();
    }
    row += (row.empty() ? "" : " ") + word;
  }
  if (!row.empty()) rows.push_back(row);
  return rows;
}

}  // namespace portreuse
