// Ports for experiments: fresh ones from the kernel, and a check that a port is really free
// before a lesson is drawn from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "portreuse/errors.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse {

// Asks the kernel for a free TCP port: binds port 0 on the wildcard address (so the port is free
// for every local address), reads the port back with getsockname(), and closes the socket. Such a
// probe never accepted a connection, so it leaves no TIME_WAIT behind. A port that any socket in
// the table still mentions, at either end, is skipped.
Result<std::uint16_t> free_tcp_port();

// The sockets currently bound to the port (any state). Empty means nobody holds it.
Result<std::vector<SocketEntry>> sockets_holding(std::uint16_t port, Transport transport = Transport::tcp);

// One line per socket, with the owner's pid and command when /proc tells:
// "LISTEN     0.0.0.0:9999 (pid 4242, nc)".
std::vector<std::string> describe_holders(const std::vector<SocketEntry>& holders);

// Parses a port argument: 1..65535, digits only. nullopt otherwise.
std::optional<std::uint16_t> parse_port(std::string_view text);

}  // namespace portreuse
