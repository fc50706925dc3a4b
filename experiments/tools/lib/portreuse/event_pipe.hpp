// Reports from a child process to its parent, one line per event on a pipe:
// "<source> <kind> <outcome> <detail>". The child writes (it must not print: stdout may be
// JSON); the parent reads them in order, with a deadline, and narrates or decides from them.
// Used by ServerProcess (source: the pid) and by the network-namespace runner (source: a tag).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "portreuse/fd.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

struct PipeEvent {
  std::string source;   // who reported: a pid, or a tag the writer chose
  std::string kind;     // "bind", "listen", "sysctl", ...
  std::string outcome;  // "ok" or an errno name
  std::string detail;   // free text, one line
};

// Writes one event as one line; newlines in the fields become spaces. Never blocks for long: the
// events are small and the parent drains the pipe.
void write_pipe_event(int fd, std::string_view source, std::string_view kind, std::string_view outcome,
                      std::string_view detail);

class PipeEventReader {
 public:
  explicit PipeEventReader(UniqueFd read_end) : read_end_(std::move(read_end)) {}

  // The next event; nullopt when none came within the deadline or every writer is gone
  // (closed() tells which).
  std::optional<PipeEvent> next(Millis deadline);
  [[nodiscard]] bool closed() const noexcept { return !read_end_ && buffered_.find('\n') == std::string::npos; }

 private:
  UniqueFd read_end_;
  std::string buffered_;
};

}  // namespace portreuse
