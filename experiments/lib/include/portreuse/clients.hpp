// Clients that choose their own local address before connect(), and a check of which listening
// socket a connection reached. Shared by the experiments about addresses (06, 07: where does a
// connection go when several sockets share a port?) and about the four-tuple (08: two clients on
// one local port).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "portreuse/experiment.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

// A client socket of this process: options, an optional bind() to a chosen local address, then
// connect(). Each call is narrated and its outcome kept; the socket stays open as long as this does.
struct ClientAttempt {
  UniqueFd socket;
  std::error_code bind_outcome;  // also holds a failed socket() or setsockopt()
  std::error_code connect_outcome;
  bool connect_tried = false;

  // The call that decided the attempt: bind when it failed or connect was never tried.
  [[nodiscard]] std::string deciding_call() const;
  [[nodiscard]] std::error_code deciding_outcome() const;
};

// Opens a TCP socket of local's family (AF_INET when no local address is asked for), sets the
// options and, when `local` is given, binds it there. Without `local` nothing is bound:
// connect() then picks an ephemeral port.
ClientAttempt prepare_client(const StepContext& context, std::string_view actor, const SocketOptions& options,
                             const std::optional<Endpoint>& local = std::nullopt);

// connect() within the deadline, narrated with the local address it used. Not tried (the bind
// error is returned) when the client could not be set up.
std::error_code connect_client(const StepContext& context, std::string_view actor, ClientAttempt& client,
                               const Endpoint& server, Millis deadline = kDefaultDeadline);

// Where connections to a set of addresses went, when several sockets listen on one port.
struct Deliveries {
  // Every connection reached the listener bound to exactly its address or, when no listener has
  // that address, the wildcard one: the kernel preferred the most specific match.
  bool most_specific_won = true;
  std::vector<std::string> lines;  // "127.0.0.2:40123 -> listener 0.0.0.0:40123", or the error

  [[nodiscard]] std::string lines_json() const;  // the lines as a JSON array, for Observation::facts
};

// For each target, a fresh client (SO_LINGER 0, so that no TIME_WAIT is left) connects, and the
// listener that has the connection waiting is found and accepts it. Narrated; bounded by the
// deadline per target.
Deliveries deliver_to_listeners(const StepContext& context, const std::vector<Endpoint>& targets,
                                const std::vector<int>& listeners, Millis deadline = kDefaultDeadline);

}  // namespace portreuse
