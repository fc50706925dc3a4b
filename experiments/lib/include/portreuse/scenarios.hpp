// The choreographies several experiments share, so that each experiment file is only its table
// of claims: a server restarted after a real signal, and a socket that tries to bind and listen.
#pragma once

#include <csignal>
#include <string>

#include "portreuse/experiment.hpp"
#include "portreuse/server.hpp"

namespace portreuse {

// An old server process is started, optionally serves one client, is stopped with a real signal,
// and a new server process binds the same wildcard address and port.
struct RestartPlan {
  SocketOptions old_options;
  SocketOptions new_options;
  SocketOptions new_options_after_bind;  // the new server sets these only after its bind()
  bool serve_one_client = true;
  FirstToClose first_to_close = FirstToClose::server;
  Reply reply = Reply::uppercase;
  bool fork_per_connection = false;  // a child of the old server keeps the connection during the restart
  int stop_signal = SIGINT;          // SIGINT is Ctrl+C; SIGKILL a killed daemon
  std::string client_message = "hello from the client";
};

// Observation: call bind (or listen, when bind passed and listen did not) of the new server.
// Situation, from the socket table just before the restart: "listener", "connection",
// "time-wait" or "clean" (nothing bound to the port). Facts: "sockets_before_restart",
// "time_wait_side" ("server", "client" or "none"), "stop_signal", and "options_after_bind" when the
// new server sets options only after its bind().
Observation restart_server(StepContext& context, const RestartPlan& plan);

// A socket of this process tries bind() and then (if asked) listen(). The outcome of each call
// is narrated and kept; the socket stays open for as long as the attempt lives.
struct ListenAttempt {
  UniqueFd socket;
  std::error_code bind_outcome;
  std::error_code listen_outcome;
  bool listened = false;

  // The call that decided the attempt: the first that failed, else the last that was made.
  [[nodiscard]] std::string deciding_call() const;
  [[nodiscard]] std::error_code deciding_outcome() const;
};

ListenAttempt attempt_listen(const StepContext& context, std::string_view actor, const Endpoint& where,
                             const SocketOptions& options, bool then_listen = true,
                             Transport transport = Transport::tcp);

// Narrates a server's reports in order until one of `kind` (or a failure) arrives, and returns it.
std::optional<ServerEvent> follow_server(const StepContext& context, ServerProcess& server, std::string_view kind);

// The situation name used by restart_server for what is bound to a port: "listener",
// "connection", "time-wait" or "clean"; "unobserved" when the socket table could not be read.
std::string classify_holders(const std::vector<SocketEntry>& bound);
std::string classify_holders(const Result<std::vector<SocketEntry>>& bound);

// The sockets as a JSON array of their one-line descriptions.
std::string sockets_json(const std::vector<SocketEntry>& sockets);

}  // namespace portreuse
