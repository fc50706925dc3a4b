#include "portreuse/clients.hpp"

#include <chrono>

#include "portreuse/json.hpp"
#include "portreuse/scenarios.hpp"

namespace portreuse {
namespace {

// The listener a connection to `target` should reach when the most specific address wins.
std::optional<std::size_t> most_specific_listener(const Endpoint& target, const std::vector<Endpoint>& bound) {
  std::optional<std::size_t> wildcard;
  for (std::size_t index = 0; index < bound.size(); ++index) {
    if (bound[index].address_text() == target.address_text()) return index;
    if (bound[index].is_wildcard()) wildcard = index;
  }
  return wildcard;
}

}  // namespace

std::string ClientAttempt::deciding_call() const {
  return bind_outcome || !connect_tried ? "bind" : "connect";
}

std::error_code ClientAttempt::deciding_outcome() const {
  return bind_outcome ? bind_outcome : connect_outcome;
}

ClientAttempt prepare_client(const StepContext& context, std::string_view actor, const SocketOptions& options,
                             const std::optional<Endpoint>& local) {
  ClientAttempt client;
  if (local) {
    // Socket, options and bind() exactly as a server's would be, narrated the same way.
    auto bound = attempt_listen(context, actor, *local, options, /*then_listen=*/false);
    client.socket = std::move(bound.socket);
    client.bind_outcome = bound.bind_outcome;
    return client;
  }
  const auto& narrator = context.narrator();
  auto opened = open_socket(AF_INET);
  if (!opened) {
    client.bind_outcome = opened.error();
    narrator.call(actor, "socket", opened.error());
    return client;
  }
  client.socket = std::move(opened.value());
  if (auto error = apply_options(client.socket.get(), options)) {
    client.bind_outcome = error;
    narrator.call(actor, "setsockopt " + options.describe(), error);
  }
  return client;
}

std::error_code connect_client(const StepContext& context, std::string_view actor, ClientAttempt& client,
                               const Endpoint& server, Millis deadline) {
  if (client.bind_outcome) return client.bind_outcome;
  client.connect_tried = true;
  client.connect_outcome = connect_within(client.socket.get(), server, deadline);
  const auto from = local_endpoint(client.socket.get());
  const bool has_port = from && from->port() != 0;
  context.narrator().call(actor, "connect " + server.text() + (has_port ? " from " + from->text() : ""),
                          client.connect_outcome);
  return client.connect_outcome;
}

std::string Deliveries::lines_json() const {
  return json_string_array(lines);
}

Deliveries deliver_to_listeners(const StepContext& context, const std::vector<Endpoint>& targets,
                                const std::vector<int>& listeners, Millis deadline) {
  const auto& narrator = context.narrator();
  std::vector<Endpoint> bound;
  for (const int fd : listeners) {
    auto where = local_endpoint(fd);
    bound.push_back(where ? *where : Endpoint{});
  }
  Deliveries deliveries;
  for (const auto& target : targets) {
    auto client = prepare_client(context, "client", SocketOptions{.abortive_close = true});
    if (auto failed = connect_client(context, "client", client, target, deadline)) {
      deliveries.most_specific_won = false;
      deliveries.lines.push_back(target.text() + " -> " + outcome_name(failed));
      continue;
    }
    auto arrival = accept_on_any(listeners, deadline);
    if (!arrival) {
      narrator.line("kernel",
                    "no listening socket here got the connection (" + describe_outcome(arrival.error()) + ")");
      deliveries.most_specific_won = false;
      deliveries.lines.push_back(target.text() + " -> no listener here (" + outcome_name(arrival.error()) + ")");
      continue;
    }
    // The accepted side also closes with RST: nothing of this probe may outlive the step.
    (void)apply_options(arrival->connection.fd.get(), SocketOptions{.abortive_close = true});
    const auto& reached = bound[arrival->listener];
    narrator.line("kernel", "handed the connection to the socket listening on " + reached.text());
    deliveries.lines.push_back(target.text() + " -> listener " + reached.text());
    if (most_specific_listener(target, bound) != arrival->listener) deliveries.most_specific_won = false;
  }
  return deliveries;
}

}  // namespace portreuse
