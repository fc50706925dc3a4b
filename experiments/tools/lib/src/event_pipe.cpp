#include "portreuse/event_pipe.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>

namespace portreuse {
namespace {

using Clock = std::chrono::steady_clock;

std::string one_line(std::string_view text) {
  std::string flat;
  for (const char character : text) flat += (character == '\n' || character == '\r') ? ' ' : character;
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  return flat;
}

// "<source> <kind> <outcome> <detail>": the first three have no spaces, the detail may.
std::optional<PipeEvent> parse_line(const std::string& line) {
  const auto first = line.find(' ');
  const auto second = first == std::string::npos ? first : line.find(' ', first + 1);
  if (second == std::string::npos) return std::nullopt;
  const auto third = line.find(' ', second + 1);
  PipeEvent event;
  event.source = line.substr(0, first);
  event.kind = line.substr(first + 1, second - first - 1);
  event.outcome = line.substr(second + 1, third == std::string::npos ? std::string::npos : third - second - 1);
  if (third != std::string::npos) event.detail = line.substr(third + 1);
  return event;
}

}  // namespace

void write_pipe_event(int fd, std::string_view source, std::string_view kind, std::string_view outcome,
                      std::string_view detail) {
  const std::string text =
      one_line(source) + " " + one_line(kind) + " " + one_line(outcome) + " " + one_line(detail) + "\n";
  (void)!::write(fd, text.data(), text.size());
}

std::optional<PipeEvent> PipeEventReader::next(Millis deadline) {
  const auto until = Clock::now() + deadline;
  for (;;) {
    if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
      const std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      if (auto event = parse_line(line)) return event;
      continue;
    }
    if (!read_end_) return std::nullopt;
    const auto left = std::chrono::duration_cast<Millis>(until - Clock::now());
    if (wait_readable(read_end_.get(), left.count() > 0 ? left : Millis(0))) return std::nullopt;
    std::array<char, 1024> buffer{};
    const auto got = ::read(read_end_.get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      read_end_.reset();  // every writer (the child and anything it forked) is gone
      continue;
    }
    buffered_.append(buffer.data(), static_cast<std::size_t>(got));
  }
}

}  // namespace portreuse
