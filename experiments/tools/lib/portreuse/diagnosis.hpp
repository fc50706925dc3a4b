// Why a socket call failed, in words for a person: what the kernel's socket table shows for the
// port, and the likely reason, chosen from what was observed (the errno, the sockets bound to the
// port, their owners, and the options of the socket that failed). The classroom tools print it;
// experiments can use it to explain an outcome they did not foresee.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "portreuse/net.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse {

struct PortHolder {
  SocketEntry socket;
  std::optional<SocketOwner> owner;  // nullopt for TIME_WAIT, or when /proc does not tell
};

struct BindDiagnosis {
  // What decided the reason: "listener", "connection", "time-wait", "clean" (classify_holders()
  // of the sockets whose address overlaps the attempted one), "unreadable" when the socket table
  // could not be read, or the errno's own name for failures that are not about the port's users
  // ("address-not-local", "privileged-port").
  std::string situation;
  std::vector<PortHolder> holders;    // every socket bound to the port, owners where known
  std::vector<std::string> sockets;   // one line per holder, as describe_holders() writes them
  std::string reason;                 // the likely reason, one paragraph
  double time_wait_seconds_left = 0;  // the longest TIME_WAIT timer among the holders
};

// For a bind() (or listen()) on `attempted` with `options` that failed with `outcome`. Reads the
// socket table now, so call it right after the failure.
BindDiagnosis diagnose_bind_failure(const Endpoint& attempted, const SocketOptions& options, std::error_code outcome);

// One sentence on why a client's call ("connect", "send", "receive", "bind") failed, for the
// usual errors (refused, reset, unreachable, address not local, timed out).
std::string explain_client_failure(std::string_view call, const Endpoint& server, std::error_code outcome);

// Whether a socket bound to `bound` is checked against a bind() to `attempted` (same port): equal
// addresses, or either one a wildcard. IPv4 and IPv6 overlap only through a wildcard.
bool addresses_overlap(const Endpoint& attempted, const Endpoint& bound);

}  // namespace portreuse
