#include "portreuse/ports.hpp"

#include <charconv>

namespace portreuse {

Result<std::uint16_t> free_tcp_port() {
  std::error_code last_failure = make_error(EADDRINUSE);
  for (int attempt = 0; attempt < 20; ++attempt) {
    // The IPv6 wildcard (dual stack) would cover IPv6 too, but IPv4 must work on every host.
    auto probe = open_socket(AF_INET);
    if (!probe) return probe.error();
    const auto wildcard = Endpoint::parse("0.0.0.0", 0);
    if (auto error = bind_to(probe->get(), *wildcard)) {
      last_failure = error;
      continue;
    }
    auto bound = local_endpoint(probe->get());
    if (!bound) return bound.error();
    const auto port = bound->port();
    probe->reset();
    // Fresh means no socket at either end: a TIME_WAIT whose far end is this port (an earlier
    // server here, whose client closed first) would otherwise show up in this port's lesson.
    // IPv6 listeners only, as the lesson's own table reads until it needs more (Ipv6Rows).
    auto table = read_socket_table(Transport::tcp, TableSource::automatic, Ipv6Rows::listeners);
    if (!table || involving_port(*table, port).empty()) return port;  // no table: trust the kernel
  }
  return last_failure;
}

Result<std::vector<SocketEntry>> sockets_holding(std::uint16_t port, Transport transport) {
  auto table = read_socket_table(transport);
  if (!table) return table.error();
  return bound_to_port(*table, port);
}

std::vector<std::string> describe_holders(const std::vector<SocketEntry>& holders) {
  std::vector<std::string> lines;
  lines.reserve(holders.size());
  for (const auto& holder : holders) {
    std::string line = holder.describe();
    if (auto owner = find_socket_owner(holder.inode)) {
      line += " (pid " + std::to_string(owner->pid) + ", " + owner->command + ")";
    } else if (holder.is(TcpState::time_wait)) {
      line += " (no process: the kernel holds it)";
    }
    lines.push_back(line);
  }
  return lines;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || value < 1 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace portreuse
