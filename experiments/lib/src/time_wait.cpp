#include "portreuse/time_wait.hpp"

#include <array>
#include <cstdio>

#include "portreuse/json.hpp"

namespace portreuse {
namespace {

std::string seconds_json(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f", seconds);
  return text.data();
}

}  // namespace

std::vector<TimeWaitSocket> time_waits_for(const std::vector<SocketEntry>& sockets, std::uint16_t port) {
  std::vector<TimeWaitSocket> found;
  for (const auto& entry : sockets) {
    if (!entry.is(TcpState::time_wait)) continue;
    found.push_back({entry.local.port() == port ? "server" : "client", entry});
  }
  return found;
}

std::vector<TimeWaitSocket> report_time_waits(const StepContext& context, std::uint16_t port,
                                              Observation& observation) {
  const auto& narrator = context.narrator();
  auto table = read_socket_table();
  if (!table) {
    narrator.line("kernel", "cannot read the socket table (" + describe_outcome(table.error()) + ")");
    observation.facts.emplace_back("time_wait_seconds_left", "null");
    observation.facts.emplace_back("time_wait_holds_port", "null");
    return {};
  }
  auto found = time_waits_for(involving_port(*table, port), port);
  const TimeWaitSocket* longest = nullptr;
  for (const auto& time_wait : found) {
    const auto held = std::to_string(time_wait.socket.local.port());
    const auto which = time_wait.side == "server" ? "port " + held + " itself"
                                                  : "ephemeral port " + held + ", not " + std::to_string(port);
    narrator.line("kernel", "the TIME_WAIT is the " + time_wait.side + "'s: it keeps " + which + "; " +
                                seconds_json(time_wait.socket.timer_seconds) + " s left on its timer");
    if (!longest || time_wait.socket.timer_seconds > longest->socket.timer_seconds) longest = &time_wait;
  }
  if (!longest) narrator.line("kernel", "no TIME_WAIT socket for a connection to port " + std::to_string(port));
  observation.facts.emplace_back("time_wait_seconds_left",
                                 longest ? seconds_json(longest->socket.timer_seconds) : "null");
  observation.facts.emplace_back("time_wait_holds_port",
                                 longest ? std::to_string(longest->socket.local.port()) : "null");
  return found;
}

std::string time_wait_side_of(const Observation& observation) {
  for (const auto& [key, value] : observation.facts) {
    if (key != "time_wait_side") continue;
    for (const char* side : {"server", "client", "none"}) {
      if (value == json_quote(side)) return side;
    }
  }
  return "";
}

}  // namespace portreuse
