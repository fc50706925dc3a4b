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
// Usage: build/default/bin/08-four-tuple [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::make_error;
using portreuse::outcome_name;

// The address a socket was given, as getsockname() reports it: the port the kernel chose for a
// bind() to port 0.
Endpoint bound_address(Trace& t, int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  t.must("getsockname", ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length));
  const auto bound = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&address), length);
  t.note("is bound to " + bound.text());
  return bound;
}

// A client socket as both clients make it: SO_REUSEADDR, so that both may bind 127.0.0.1:Q, and
// SO_LINGER 0 s, so that close() ends a connection with RST and leaves no TIME_WAIT on Q.
int client_socket(Trace& t) {
  const int fd = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  const int on = 1;
  t.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  const linger reset_on_close{1, 0};
  t.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof reset_on_close),
         "SO_LINGER {on, 0 s}");
  return fd;
}

// "ok" or the errno name of a recorded call.
std::string outcome_of(const Event& event) {
  return outcome_name(make_error(event.error));
}

// A server listens on 127.0.0.1:P (and, for the second step, server 2 on a port the kernel
// picks); clients A and B both bind 127.0.0.1:Q; A connects to the server, which accepts; then B
// connects to the same server or to server 2. B's connect() answers the step (or B's bind(), if
// that was refused).
Observation second_client_connects(Lab& lab, bool to_the_same_server) {
  const auto server_address = lab.loopback();
  auto server = lab.actor("server", Role::server);
  const int server_fd = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  server.must("bind", ::bind(server_fd, server_address.raw(), server_address.raw_length()), server_address);
  server.must("listen", ::listen(server_fd, 8));

  const auto any_port = server_address.with_port(0);  // port 0: the kernel picks a free one
  auto target = server_address;
  auto server_2 = lab.actor("server 2", Role::server);
  int server_2_fd = -1;
  if (!to_the_same_server) {
    server_2_fd = server_2.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    server_2.must("bind", ::bind(server_2_fd, any_port.raw(), any_port.raw_length()), any_port);
    target = bound_address(server_2, server_2_fd);
    server_2.must("listen", ::listen(server_2_fd, 8));
  }

  // Client A takes a port from the kernel (Q); client B asks for the same address and port.
  auto a = lab.actor("client A", Role::client);
  const int a_fd = client_socket(a);
  a.must("bind", ::bind(a_fd, any_port.raw(), any_port.raw_length()), any_port);
  const Event first_bind = lab.events().back();
  const auto local = bound_address(a, a_fd);
  auto b = lab.actor("client B", Role::client);
  const int b_fd = client_socket(b);
  b.call("bind", ::bind(b_fd, local.raw(), local.raw_length()), local);
  const Event second_bind = lab.events().back();

  std::optional<Event> answer = second_bind;
  std::optional<Event> first_connect;
  int accepted = -1;
  auto situation = Situation::second_bind_refused;
  if (second_bind.ok()) {
    a.must("connect", ::connect(a_fd, server_address.raw(), server_address.raw_length()), server_address);
    first_connect = lab.events().back();
    accepted = server.must("accept", ::accept(server_fd, nullptr, nullptr));
    const auto shown = lab.show_sockets("the kernel's sockets for the clients' port:", local.port());
    lab.pause("client A's connection: ss -tan sport = :" + std::to_string(local.port()));

    // Does the table hold a connection with exactly the four numbers B is about to ask for?
    const auto* table = lab.shown_sockets();
    bool taken = false;
    for (const auto& row : table != nullptr ? *table : std::vector<portreuse::SocketEntry>{}) {
      taken = taken || (row.local.text() == local.text() && row.remote.text() == target.text());
    }
    if (shown == Situation::unobserved) {
      situation = Situation::unobserved;
    } else {
      situation = taken ? Situation::tuple_taken : Situation::tuple_free;
      b.note("wants " + local.text() + " <-> " + target.text() +
             (taken ? ": the table above has a connection with these four numbers"
                    : ": no connection in the table above has these four numbers"));
    }
    b.call("connect", ::connect(b_fd, target.raw(), target.raw_length()), target);
    answer = lab.events().back();
  }

  lab.you("close everything (the clients with SO_LINGER 0: RST, no TIME_WAIT)");
  a.must("close", ::close(a_fd));
  b.must("close", ::close(b_fd));
  if (accepted >= 0) server.must("close", ::close(accepted));
  server.must("close", ::close(server_fd));
  if (server_2_fd >= 0) server_2.must("close", ::close(server_2_fd));
  lab.show_sockets("what is left on the clients' port:", local.port());
  const auto left = lab.shown_sockets_json();

  auto observation = second_bind.ok() ? lab.observe(answer, {Evidence::listening, Evidence::accepted}, situation)
                                      : lab.observe(answer, {Evidence::listening}, situation);
  observation.fact("client_port", std::to_string(local.port()))
      .fact_text("first_bind", outcome_of(first_bind))
      .fact_text("second_bind", outcome_of(second_bind))
      .fact_text("second_four_tuple", local.text() + " <-> " + target.text())
      .fact("left_on_client_port", left);
  if (first_connect) observation.fact_text("first_connect", outcome_of(*first_connect));
  return observation;
}

Observation duplicate_four_tuple_connect(Lab& lab) {
  return second_client_connects(lab, true);
}

Observation reused_port_different_remote(Lab& lab) {
  return second_client_connects(lab, false);
}

// ---- The claims, and the explanations the observed outcome chooses from ---------------------

const Experiment kExperiment{
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
                .claimed = EADDRNOTAVAIL,
                .explanations =
                    {
                        {EADDRNOTAVAIL, Situation::tuple_taken,
                         "bind() let both clients onto 127.0.0.1:Q: both set SO_REUSEADDR and neither listens, so "
                         "Linux sees no conflict. A connection, however, is named by four numbers, and client A's "
                         "connection already uses exactly the four B asked for. When connect() fixes the tuple, "
                         "the kernel looks it up among the established connections (__inet_check_established() in "
                         "net/ipv4/inet_hashtables.c) and refuses a duplicate, because packets for it could not be "
                         "told apart. Linux reports that as EADDRNOTAVAIL; the article names no error code."},
                        {EADDRINUSE, Situation::tuple_taken,
                         "connect() refused the duplicate four-tuple with EADDRINUSE, the way BSD-derived stacks "
                         "report it (Linux documents EADDRNOTAVAIL here)."},
                        {EADDRINUSE, Situation::second_bind_refused,
                         "Client B could not even bind 127.0.0.1:Q: this kernel did not let SO_REUSEADDR put two "
                         "unconnected sockets on one address, so connect() never had to check the four-tuple."},
                        {EADDRNOTAVAIL, Situation::unobserved,
                         "The socket table could not be read, so A's connection was not seen listed; but the "
                         "server accepted A's connection above, so the four numbers B asked for were in use. "
                         "connect() refused the duplicate: Linux reports that as EADDRNOTAVAIL."},
                        {EADDRNOTAVAIL, Situation::any,
                         "connect() was refused; the socket table above shows what the kernel held for the "
                         "clients' port."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::tuple_free,
                         "Client B shares 127.0.0.1:Q with client A, but its remote end is another server, so its "
                         "four numbers differ from A's and the connection is unique. Incoming packets are matched "
                         "on all four numbers, so the kernel can always tell A's segments from B's."},
                        {kOk, Situation::any,
                         "Client B connected from the same local address and port as A, to another server."},
                        {EADDRNOTAVAIL, Situation::any,
                         "connect() was refused although B's remote end differs from A's. The socket table above "
                         "shows what the kernel held for the port."},
                        {EADDRINUSE, Situation::second_bind_refused,
                         "Client B could not bind 127.0.0.1:Q next to client A: this kernel did not let "
                         "SO_REUSEADDR put two unconnected sockets on one address."},
                    },
                .run = reused_port_different_remote,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
