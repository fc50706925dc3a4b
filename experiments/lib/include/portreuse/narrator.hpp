// Narration for a person: who does what, the kernel's answer, the socket table, the verdict.
// Quiet in --json mode, so that stdout then carries JSON Lines only.
#pragma once

#include <sys/types.h>

#include <iosfwd>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace portreuse {

enum class Tone { plain, good, bad, note, heading, dim };

class Narrator {
 public:
  Narrator(std::ostream& out, bool enabled, bool colour);

  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  [[nodiscard]] std::string paint(std::string_view text, Tone tone) const;

  void banner(std::string_view number, std::string_view title) const;
  void step_heading(std::string_view step_id, std::string_view preview) const;
  // "  [server 4242] text"
  void line(std::string_view actor, std::string_view text) const;
  // "  [server 4242] bind 0.0.0.0:9999 ... EADDRINUSE (Address already in use)"
  void call(std::string_view actor, std::string_view call_text, std::error_code outcome) const;
  // A labelled, wrapped paragraph: "  Why: ..."
  void paragraph(std::string_view label, std::string_view text, Tone tone = Tone::plain) const;
  void table(std::string_view actor, std::string_view caption, const std::vector<std::string>& rows) const;
  void blank() const;
  // For --step: shows what comes next and waits for Enter (end of input just goes on).
  void pause(std::string_view preview) const;

 private:
  std::ostream& out_;
  bool enabled_;
  bool colour_;
};

// "[server 4242]" and "[client]" tags used in narration.
std::string server_actor(pid_t pid);

// Breaks text into lines of at most width characters (words are not split).
std::vector<std::string> wrap_text(std::string_view text, std::size_t width);

}  // namespace portreuse
