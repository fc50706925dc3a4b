// Where a connection's TIME_WAIT sits and how long the kernel will still keep it. The side that
// closed first decides where; Linux's fixed TCP_TIMEWAIT_LEN (60 s) decides how long.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "portreuse/experiment.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse {

struct TimeWaitSocket {
  std::string side;  // "server" when it holds the port itself, "client" for the peer's ephemeral port
  SocketEntry socket;
};

// The TIME_WAIT sockets among `sockets` that belong to the one connection between server_port and
// client_port (both on loopback), with the side each is on. A TIME_WAIT that an earlier user of the
// port left behind is not this connection's and is not returned.
std::vector<TimeWaitSocket> time_waits_of_connection(const std::vector<SocketEntry>& sockets, std::uint16_t server_port,
                                                     std::uint16_t client_port);

// Reads the socket table now and narrates each TIME_WAIT of the connection restart_server() made
// to `port` (its "client_port" fact names the other end): whose it is, which local port it keeps,
// how long its timer still runs. Adds the facts "time_wait_seconds_left" (the longest timer) and
// "time_wait_holds_port" (that socket's local port), both null when there is no TIME_WAIT.
// Returns what it found.
std::vector<TimeWaitSocket> report_time_waits(const StepContext& context, std::uint16_t port, Observation& observation);

// The "time_wait_side" fact that restart_server() records ("server", "client", "none"); "" when absent.
std::string time_wait_side_of(const Observation& observation);

}  // namespace portreuse
