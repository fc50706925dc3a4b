#include "portreuse/time_wait.hpp"

#include <array>
#include <cstdio>

#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"

namespace portreuse {
namespace {

std::string seconds_json(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f", seconds);
  return text.data();
}

}  // namespace

std::vector<TimeWaitSocket> time_waits_of_connection(const std::vector<SocketEntry>& sockets, std::uint16_t server_port,
                                                     std::uint16_t client_port) {
  std::vector<TimeWaitSocket> found;
  for (const auto& entry : sockets) {
    if (!entry.is(TcpState::time_wait)) continue;
    if (entry.local.port() == server_port && entry.remote.port() == client_port) {
      found.push_back({"server", entry});
    } else if (entry.local.port() == client_port && entry.remote.port() == server_port) {
      found.push_back({"client", entry});
    }
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
  const auto client_port_text = observation.fact("client_port");
  const auto client_port = client_port_text ? parse_port(*client_port_text) : std::nullopt;
  auto found = client_port ? time_waits_of_connection(involving_port(*table, port), port, *client_port)
                           : std::vector<TimeWaitSocket>{};
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
  const auto side = observation.fact("time_wait_side");
  if (!side) return "";
  for (const char* known : {"server", "client", "none"}) {
    if (*side == json_quote(known)) return known;
  }
  return "";
}

}  // namespace portreuse
