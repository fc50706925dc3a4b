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

// The TIME_WAIT sockets among `sockets` (for example involving_port()) with the side each belongs to.
std::vector<TimeWaitSocket> time_waits_for(const std::vector<SocketEntry>& sockets, std::uint16_t port);

// Reads the socket table now and narrates each TIME_WAIT of a connection to `port`: whose it is,
// which local port it keeps, how long its timer still runs. Adds the facts "time_wait_seconds_left"
// (the longest timer) and "time_wait_holds_port" (that socket's local port), both null when there
// is no TIME_WAIT. Returns what it found.
std::vector<TimeWaitSocket> report_time_waits(const StepContext& context, std::uint16_t port, Observation& observation);

// The "time_wait_side" fact that restart_server() records ("server", "client", "none"); "" when absent.
std::string time_wait_side_of(const Observation& observation);

}  // namespace portreuse
