#include "portreuse/scenarios.hpp"

#include "portreuse/json.hpp"
#include "portreuse/time_wait.hpp"

namespace portreuse {
namespace {

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

}  // namespace

std::optional<ServerEvent> follow_server(const StepContext& context, ServerProcess& server, std::string_view kind) {
  const auto& narrator = context.narrator();
  while (auto event = server.next_event()) {
    const auto actor = server_actor(event->pid);
    const auto outcome = event->ok() ? std::error_code{} : parse_outcome(event->outcome).value_or(make_error(EIO));
    if (event->kind == "setsockopt") {
      narrator.call(actor, "setsockopt " + event->detail, outcome);
    } else if (event->kind == "bind") {
      narrator.call(actor, "bind " + event->detail, outcome);
    } else if (event->kind == "listen" || event->kind == "accept") {
      narrator.call(actor, event->kind + (event->detail.empty() ? "" : " from " + event->detail), outcome);
    } else if (event->kind == "received") {
      narrator.line(actor, "received " + quoted(event->detail));
    } else if (event->kind == "replied") {
      narrator.line(actor, "answered " + quoted(event->detail));
    } else if (event->kind == "forked") {
      narrator.line(actor, "forked child " + event->detail + " to serve the connection; goes on listening");
    } else if (event->kind == "peer-closed") {
      narrator.line(actor, event->ok() ? "read end of stream: the client closed first"
                                       : "waited for the client: " + event->outcome);
    } else if (event->kind == "closed") {
      narrator.line(actor, "closed the connection");
    }
    if (event->kind == kind || !event->ok()) return event;
  }
  return std::nullopt;
}

namespace {

// Which end of this step's own connection is in TIME_WAIT ("none" without a connection).
std::string time_wait_side(const std::vector<SocketEntry>& involved, std::uint16_t port,
                           std::optional<std::uint16_t> client_port) {
  if (!client_port) return "none";
  const auto found = time_waits_of_connection(involved, port, *client_port);
  return found.empty() ? "none" : found.front().side;
}

}  // namespace

std::string classify_holders(const std::vector<SocketEntry>& bound) {
  bool time_wait = false;
  bool connection = false;
  for (const auto& entry : bound) {
    if (entry.is(TcpState::listen)) return "listener";
    if (entry.is(TcpState::time_wait))
      time_wait = true;
    else
      connection = true;
  }
  if (connection) return "connection";
  return time_wait ? "time-wait" : "clean";
}

std::string classify_holders(const Result<std::vector<SocketEntry>>& bound) {
  return bound ? classify_holders(*bound) : std::string("unobserved");
}

std::string sockets_json(const std::vector<SocketEntry>& sockets) {
  std::vector<std::string> described;
  described.reserve(sockets.size());
  for (const auto& entry : sockets) described.push_back(entry.describe());
  return json_string_array(described);
}

Observation restart_server(StepContext& context, const RestartPlan& plan) {
  const auto& narrator = context.narrator();
  const auto port = context.port();
  ServerPlan old_plan;
  old_plan.address = context.wildcard(port);
  old_plan.options = plan.old_options;
  old_plan.clients = plan.serve_one_client ? 1 : 0;
  old_plan.reply = plan.reply;
  old_plan.first_to_close = plan.first_to_close;
  old_plan.fork_per_connection = plan.fork_per_connection;

  narrator.line("you", "start the server (" + plan.old_options.describe() + ")");
  auto old_server = ServerProcess::start(old_plan);
  if (!old_server) return Observation::failed_setup("fork: " + describe_outcome(old_server.error()));
  auto listening = follow_server(context, *old_server, "listen");
  if (!listening || !listening->ok()) {
    return Observation::failed_setup("the first server could not start listening on " + old_plan.address.text());
  }

  UniqueFd client_socket;
  std::optional<std::uint16_t> client_port;
  if (plan.serve_one_client) {
    auto client = open_socket(AF_INET);
    if (!client) return Observation::failed_setup("socket: " + describe_outcome(client.error()));
    client_socket = std::move(client.value());
    const auto server = context.loopback(port);
    const auto connected = connect_within(client_socket.get(), server);
    auto from = local_endpoint(client_socket.get());
    if (from) client_port = from->port();
    narrator.call("client", "connect " + server.text() + (from ? " from " + from->text() : ""), connected);
    if (connected) return Observation::failed_setup("the client could not connect: " + describe_outcome(connected));
    narrator.line("client", "sends " + quoted(plan.client_message));
    if (auto sent = send_all(client_socket.get(), plan.client_message)) {
      return Observation::failed_setup("send: " + describe_outcome(sent));
    }
    if (!follow_server(context, *old_server, "replied")) {
      return Observation::failed_setup("the server did not answer in time");
    }
    auto answer = receive_within(client_socket.get());
    narrator.line("client", answer ? "reads " + quoted(*answer) : "read failed: " + describe_outcome(answer.error()));
    if (plan.fork_per_connection) {
      narrator.line("client", "keeps the connection open: the server's child still serves it");
    } else if (plan.first_to_close == FirstToClose::server) {
      (void)follow_server(context, *old_server, "closed");
      const auto end = wait_for_end_of_stream(client_socket.get());
      narrator.line("client", end ? "waited for end of stream: " + describe_outcome(end)
                                  : "reads end of stream (the server closed first), then closes its socket");
      client_socket.reset();
    } else {
      narrator.line("client", "closes its socket first");
      client_socket.reset();
      (void)follow_server(context, *old_server, "closed");
    }
    context.let_closing_settle(port);
    context.show_sockets(port, "the kernel's sockets for port " + std::to_string(port) + " now:");
  }

  const bool is_ctrl_c = plan.stop_signal == SIGINT;
  narrator.line("you", (is_ctrl_c ? "press Ctrl+C: " : "kill the server: ") + signal_name(plan.stop_signal) +
                           " to server " + std::to_string(old_server->pid()));
  if (auto error = old_server->process().send_signal(plan.stop_signal)) {
    return Observation::failed_setup("kill: " + describe_outcome(error));
  }
  const auto ended = old_server->process().wait_for_exit();
  if (!ended) return Observation::failed_setup("the first server did not end after " + signal_name(plan.stop_signal));
  narrator.line(server_actor(old_server->pid()), ended->describe());
  context.let_closing_settle(port);
  auto table = read_socket_table();
  const auto involved = table ? involving_port(*table, port) : std::vector<SocketEntry>{};
  const Result<std::vector<SocketEntry>> bound =
      table ? Result<std::vector<SocketEntry>>(bound_to_port(*table, port)) : table.error();
  context.show_sockets(port, "what the kernel still holds for port " + std::to_string(port) + ":");

  ServerPlan new_plan;
  new_plan.address = context.wildcard(port);
  new_plan.options = plan.new_options;
  new_plan.options_after_bind = plan.new_options_after_bind;
  const bool sets_options_late = plan.new_options_after_bind.describe() != "no options";
  narrator.line(
      "you", "start the server again, a new process (" + plan.new_options.describe() +
                 (sets_options_late ? "; " + plan.new_options_after_bind.describe() + " only after bind" : "") + ")");
  auto new_server = ServerProcess::start(new_plan);
  if (!new_server) return Observation::failed_setup("fork: " + describe_outcome(new_server.error()));
  const auto bind_event = follow_server(context, *new_server, "bind");
  if (!bind_event) return Observation::failed_setup("the restarted server reported nothing");
  if (sets_options_late) {
    if (!follow_server(context, *new_server, "setsockopt")) {
      return Observation::failed_setup("the restarted server did not report its late setsockopt");
    }
    narrator.line("you", "that option came after bind() had answered: it cannot change that answer");
  }

  Observation observation;
  observation.call = "bind";
  observation.outcome = parse_outcome(bind_event->outcome).value_or(make_error(EIO));
  if (bind_event->ok()) {
    const auto listen_event = follow_server(context, *new_server, "listen");
    if (listen_event && !listen_event->ok()) {
      observation.call = "listen";
      observation.outcome = parse_outcome(listen_event->outcome).value_or(make_error(EIO));
    }
  }
  observation.situation = classify_holders(bound);
  observation.facts.emplace_back("sockets_before_restart", sockets_json(involved));
  observation.facts.emplace_back("time_wait_side", json_quote(time_wait_side(involved, port, client_port)));
  observation.facts.emplace_back("client_port", client_port ? std::to_string(*client_port) : "null");
  observation.facts.emplace_back("stop_signal", json_quote(signal_name(plan.stop_signal)));
  if (sets_options_late) {
    observation.facts.emplace_back("options_after_bind", json_quote(plan.new_options_after_bind.describe()));
  }
  return observation;
}

std::string ListenAttempt::deciding_call() const {
  if (bind_outcome || !listened) return "bind";
  return "listen";
}

std::error_code ListenAttempt::deciding_outcome() const {
  return bind_outcome ? bind_outcome : listen_outcome;
}

ListenAttempt attempt_listen(const StepContext& context, std::string_view actor, const Endpoint& where,
                             const SocketOptions& options, bool then_listen, Transport transport) {
  const auto& narrator = context.narrator();
  ListenAttempt attempt;
  auto opened = open_socket(where.family(), transport);
  if (!opened) {
    attempt.bind_outcome = opened.error();
    narrator.call(actor, "socket", opened.error());
    return attempt;
  }
  attempt.socket = std::move(opened.value());
  if (auto error = apply_options(attempt.socket.get(), options)) {
    attempt.bind_outcome = error;
    narrator.call(actor, "setsockopt " + options.describe(), error);
    return attempt;
  }
  attempt.bind_outcome = bind_to(attempt.socket.get(), where);
  narrator.call(actor, "bind " + where.text() + " (" + options.describe() + ")", attempt.bind_outcome);
  if (attempt.bind_outcome || !then_listen) return attempt;
  attempt.listened = true;
  attempt.listen_outcome = listen_on(attempt.socket.get());
  narrator.call(actor, "listen", attempt.listen_outcome);
  return attempt;
}

}  // namespace portreuse
