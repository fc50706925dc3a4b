// 08-four-tuple: four-tuple uniqueness at connect().
//
// Shows: two client sockets with SO_REUSEADDR may both bind 127.0.0.1:Q (neither listens), but
// once one of them is connected to a server, the other cannot connect to the same server: the
// connection would repeat all four numbers (local address and port, remote address and port).
// Towards a different server the same local port is fine.
//
// Article: "Example of the SO_REUSEADDR Option" (HP-UX: SO_REUSEADDR relaxes bind(), but the
// uniqueness of the whole association is still checked at connect time).
// Lesson: lessons/08-four-tuple.md
//
// Usage: 08-four-tuple [--port P] [--json] [--no-color] [--step]
#include "portreuse/clients.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// True when the kernel's table already holds a connection with exactly these two ends.
bool four_tuple_taken(const Endpoint& local, const Endpoint& remote) {
  auto table = read_socket_table();
  if (!table) return false;
  for (const auto& entry : involving_port(*table, local.port())) {
    if (entry.local.text() == local.text() && entry.remote.text() == remote.text()) return true;
  }
  return false;
}

// Server(s) listen on 127.0.0.1; clients A and B (SO_REUSEADDR, SO_LINGER 0) both bind
// 127.0.0.1:Q; A connects to the first server; B connects to the same server or to a second one.
// The outcome is B's connect() (or B's bind(), if that was refused).
Observation second_client_connects(StepContext& context, bool to_the_same_server) {
  const auto& narrator = context.narrator();
  const auto client_port = context.fresh_port();
  if (!client_port)
    return Observation::failed_setup("no free port for the clients: " + describe_outcome(client_port.error()));
  const auto server = context.loopback(context.port());
  auto server_socket = attempt_listen(context, "server", server, SocketOptions{});
  if (server_socket.deciding_outcome()) {
    return Observation::failed_setup("the server could not listen on " + server.text() + ": " +
                                     describe_outcome(server_socket.deciding_outcome()));
  }
  Endpoint target = server;
  ListenAttempt other_server;
  if (!to_the_same_server) {
    const auto other_port = context.fresh_port();
    if (!other_port) return Observation::failed_setup("no free port for a second server");
    target = context.loopback(*other_port);
    other_server = attempt_listen(context, "server 2", target, SocketOptions{});
    if (other_server.deciding_outcome()) {
      return Observation::failed_setup("the second server could not listen on " + target.text() + ": " +
                                       describe_outcome(other_server.deciding_outcome()));
    }
  }

  // SO_LINGER 0: the clients end their connections with RST, so no TIME_WAIT stays on port Q.
  const SocketOptions client_options{.reuse_address = 1, .abortive_close = true};
  const auto local = context.loopback(*client_port);
  auto first = prepare_client(context, "client A", client_options, local);
  auto second = prepare_client(context, "client B", client_options, local);
  Observation observation;
  observation.facts.emplace_back("client_port", std::to_string(*client_port));
  observation.facts.emplace_back("first_bind", json_quote(outcome_name(first.bind_outcome)));
  observation.facts.emplace_back("second_bind", json_quote(outcome_name(second.bind_outcome)));
  if (first.bind_outcome) {
    return Observation::failed_setup("client A could not bind " + local.text() + ": " +
                                     describe_outcome(first.bind_outcome));
  }
  if (auto failed = connect_client(context, "client A", first, server)) {
    return Observation::failed_setup("client A could not connect to " + server.text() + ": " +
                                     describe_outcome(failed));
  }
  observation.facts.emplace_back("first_connect", json_quote(outcome_name(first.connect_outcome)));
  context.show_sockets(*client_port, "the kernel's sockets for the clients' port:");

  const bool taken = four_tuple_taken(local, target);
  narrator.line("client B", "wants the connection " + local.text() + " <-> " + target.text() +
                                (taken ? ": the table above already has one with these four numbers"
                                       : ": no connection in the table has these four numbers"));
  (void)connect_client(context, "client B", second, target);
  observation.call = second.deciding_call();
  observation.outcome = second.deciding_outcome();
  observation.situation = second.bind_outcome ? "second-bind-refused" : (taken ? "tuple-taken" : "tuple-free");
  observation.facts.emplace_back("second_four_tuple", json_quote(local.text() + " <-> " + target.text()));

  narrator.line("you", "close everything (the clients with SO_LINGER 0: RST, no TIME_WAIT)");
  first.socket.reset();
  second.socket.reset();
  server_socket.socket.reset();
  other_server.socket.reset();
  context.let_closing_settle(*client_port);
  context.show_sockets(*client_port, "what is left on the clients' port:");
  const auto table = read_socket_table();
  const auto left = table ? involving_port(*table, *client_port) : std::vector<SocketEntry>{};
  observation.facts.emplace_back("left_on_client_port", sockets_json(left));
  return observation;
}

Observation duplicate_four_tuple_connect(StepContext& context) {
  return second_client_connects(context, true);
}

Observation reused_port_different_remote(StepContext& context) {
  return second_client_connects(context, false);
}

const Experiment kExperiment{
    .number = "08",
    .slug = "four-tuple",
    .title = "Four-tuple uniqueness at connect()",
    .summary =
        "SO_REUSEADDR changes what bind() accepts, not what a connection is. Two clients may share a local "
        "address and port, but no two connections may have the same four numbers: local address, local port, "
        "remote address, remote port.",
    .steps =
        {
            Step{
                .id = "duplicate-four-tuple-connect",
                .preview = "Clients A and B (SO_REUSEADDR) both bind 127.0.0.1:Q; A connects to the server; B "
                           "connects to the same server.",
                .claim = "SO_REUSEADDR loosens only the address check of bind(): a connect() that would repeat "
                         "another connection's local and remote address and port still fails.",
                .source = "\"Example of the SO_REUSEADDR Option\" (HP-UX)",
                .claimed = "EADDRNOTAVAIL",
                .expected_linux = "EADDRNOTAVAIL",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRNOTAVAIL", "tuple-taken",
                         "bind() let both clients onto 127.0.0.1:Q: both set SO_REUSEADDR and neither listens, so "
                         "Linux sees no conflict. A connection, however, is named by four numbers, and client A's "
                         "connection already uses exactly the four B asked for. When connect() fixes the tuple, "
                         "the kernel looks it up among the established connections (__inet_check_established() in "
                         "net/ipv4/inet_hashtables.c) and refuses a duplicate, because packets for it could not be "
                         "told apart. Linux reports that as EADDRNOTAVAIL; the article names no error code."},
                        {"EADDRINUSE", "tuple-taken",
                         "connect() refused the duplicate four-tuple with EADDRINUSE, the way BSD-derived stacks "
                         "report it (Linux documents EADDRNOTAVAIL here)."},
                        {"EADDRINUSE", "second-bind-refused",
                         "Client B could not even bind 127.0.0.1:Q: this kernel did not let SO_REUSEADDR put two "
                         "unconnected sockets on one address, so connect() never had to check the four-tuple."},
                        {"ok", "",
                         "Both clients are connected to the same server from the same address and port: the kernel "
                         "accepted a duplicate four-tuple. That should be impossible; the socket table shows what "
                         "it holds."},
                    },
                .run = duplicate_four_tuple_connect,
            },
            Step{
                .id = "reused-port-different-remote",
                .preview = "Clients A and B (SO_REUSEADDR) both bind 127.0.0.1:Q; A connects to server 1; B to "
                           "server 2.",
                .claim = "Only the whole association must be unique: a local address and port already in a "
                         "connection may be used again for a connection to somewhere else.",
                .source = "\"Example of the SO_REUSEADDR Option\" (HP-UX)",
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "tuple-free",
                         "Client B shares 127.0.0.1:Q with client A, but its remote end is another server, so its "
                         "four numbers differ from A's and the connection is unique. Incoming packets are matched "
                         "on all four numbers, so the kernel can always tell A's segments from B's."},
                        {"ok", "", "Client B connected from the same local address and port as A, to another server."},
                        {"EADDRNOTAVAIL", "",
                         "connect() was refused although B's remote end differs from A's. The socket table above "
                         "shows what the kernel held for the port."},
                        {"EADDRINUSE", "second-bind-refused",
                         "Client B could not bind 127.0.0.1:Q next to client A: this kernel did not let "
                         "SO_REUSEADDR put two unconnected sockets on one address."},
                    },
                .run = reused_port_different_remote,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
