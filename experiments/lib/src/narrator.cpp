#include "portreuse/narrator.hpp"

#include <iostream>
#include <sstream>

#include "portreuse/errors.hpp"

namespace portreuse {
namespace {

constexpr std::size_t kWidth = 78;
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
  out_ << "  " << paint(tag, Tone::dim) << ' ' << text << '\n' << std::flush;
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
  for (const auto& row : rows) line("", "  " + row);
}

void Narrator::blank() const {
  if (enabled_) out_ << '\n' << std::flush;
}

void Narrator::pause(std::string_view preview) const {
  if (!enabled_) return;
  out_ << paint("  next: ", Tone::note) << preview << paint("  [Enter] ", Tone::note) << std::flush;
  std::string ignored;
  if (!std::getline(std::cin, ignored)) out_ << '\n';
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
