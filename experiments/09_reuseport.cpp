// 09-reuseport: SO_REUSEPORT, the option that shares a port on purpose.
//
// Shows: SO_REUSEPORT restarts a server over its TIME_WAIT only when the old server set it too;
// two live listeners of one user can share 0.0.0.0:P and the kernel splits the connections
// between them; a listener of another user is refused (the rule against port hijacking).
//
// Article: "端口复用 (bind error: Address already in use 问题)" (SO_REUSEPORT offered as an
// alternative to SO_REUSEADDR); beyond the articles: socket(7) on SO_REUSEPORT.
// Lesson: lessons/09-reuseport.md
//
// Usage: build/default/bin/09-reuseport [--port P] [--json] [--no-color] [--step]
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstddef>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::TcpState;

constexpr int kClients = 200;
// "nobody" on most Linux systems: a user that owns nothing, least likely to hold our port.
constexpr uid_t kOtherUser = 65534;

// Experiment 02's restart, with SO_REUSEPORT=1 in the new server and, when `old_sets_it`, in the
// old one too.
Observation restart_with_reuseport(Lab& lab, bool old_sets_it) {
  const auto address = lab.wildcard();
  const int on = 1;

  lab.you(old_sets_it ? "start the server; it sets SO_REUSEPORT=1" : "start the server as it was: no options");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (old_sets_it) {
      t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
    }
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must_receive_text(connection);  // the client's hello: no answer without it
    t.send_text(connection, "message received");
    t.must("close", ::close(connection));  // the server closes first: the TIME_WAIT is its own
    t.wait_for_signal();
  });
  server.must_reach("listen");

  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);  // the receipt
  server.must_reach("close");
  client.receive_text(fd);  // 0 bytes: end of stream, because the server closed first
  client.must("close", ::close(fd));

  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("the old server's TIME_WAIT: ss -tano sport = :" + std::to_string(lab.port()));

  lab.you(old_sets_it ? "start the server again: it sets SO_REUSEPORT=1"
                      : "start the new version: it now sets SO_REUSEPORT=1");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  auto observation = lab.observe(
      restarted.wait_for("bind"),
      {Evidence::accepted, Evidence::exchanged, Evidence::server_closed_first, Evidence::server_stopped}, left_behind);
  lab.report_time_waits(observation);
  return observation;
}

Observation restart_with_reuseport_both(Lab& lab) {
  return restart_with_reuseport(lab, true);
}

// The realistic order of events: the option is added to the code, the old process (started from
// the code before the change) is stopped, and the new one starts with it.
Observation restart_with_reuseport_new_only(Lab& lab) {
  return restart_with_reuseport(lab, false);
}

// "shared" when the table just shown lists two listeners on the port; else what it showed.
Situation listeners_in(const Lab& lab, Situation shown) {
  int listeners = 0;
  for (const auto& entry : lab.table()) {
    if (entry.is(TcpState::listen) && entry.local.port() == lab.port()) ++listeners;
  }
  return listeners >= 2 ? Situation::shared : shown;
}

// Two listening sockets on one wildcard address, then 200 clients: who accepts them?
Observation two_listeners_reuseport(Lab& lab) {
  const auto address = lab.wildcard();
  const int on = 1;

  auto first = lab.actor("listener 1", Role::server);
  const int one = first.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  first.must("setsockopt", ::setsockopt(one, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
  first.must("bind", ::bind(one, address.raw(), address.raw_length()), address);
  first.must("listen", ::listen(one, 8));

  auto second = lab.actor("listener 2", Role::server);
  const int two = second.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  second.must("setsockopt", ::setsockopt(two, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
  if (second.call("bind", ::bind(two, address.raw(), address.raw_length()), address) != 0) {
    return lab.observe(*lab.last(Call::bind, Role::server), {Evidence::listening},
                       lab.show_sockets("the kernel's sockets for the port:"));
  }
  second.call("listen", ::listen(two, 8));
  const Event answer = *lab.last(Call::listen, Role::server);
  const auto shown = listeners_in(lab, lab.show_sockets("the kernel's sockets for the port:"));
  lab.pause("two listeners, one port: ss -tlnp sport = :" + std::to_string(lab.port()));
  if (!answer.ok()) return lab.observe(answer, {Evidence::listening}, shown);

  // One client at a time: connect, see which listener the kernel queued it on, accept it there.
  // Each client closes with SO_LINGER {1, 0} (a reset), so no TIME_WAIT is left behind.
  // 200 rounds are too many to print: these traces list only failures, the totals follow.
  auto clients = lab.actor("clients", Role::client).quiet();
  auto servers = lab.actor("listeners", Role::server).quiet();
  const auto to = lab.loopback();
  const linger abort{1, 0};
  std::array<int, 2> accepted{0, 0};
  for (int round = 0; round < kClients; ++round) {
    const int fd = clients.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    clients.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
    std::array<pollfd, 2> ready{pollfd{one, POLLIN, 0}, pollfd{two, POLLIN, 0}};
    (void)::poll(ready.data(), ready.size(), 3000);  // which listener has it? (at most 3 s)
    const std::size_t which = (ready[0].revents & POLLIN) != 0 ? 0 : 1;
    const int connection = servers.must("accept", ::accept(ready[which].fd, nullptr, nullptr));
    ++accepted[which];
    clients.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort), "SO_LINGER={1, 0}");
    clients.must("close", ::close(fd));  // a reset: neither end goes into TIME_WAIT
    servers.must("close", ::close(connection));
  }
  lab.actor("clients").note(std::to_string(kClients) + " connections to " + to.text() +
                            ", one after another, each closed with a reset");
  first.note("accepted " + std::to_string(accepted[0]) + " of them");
  second.note("accepted " + std::to_string(accepted[1]) + " of them");
  lab.show_sockets("what the kernel holds for the port after them:");

  auto observation = lab.observe(answer, {Evidence::listening, Evidence::accepted}, shown);
  observation.fact("connections", std::to_string(accepted[0] + accepted[1]));
  observation.fact("accepted_first", std::to_string(accepted[0]));
  observation.fact("accepted_second", std::to_string(accepted[1]));
  return observation;
}

// Root's listener holds 0.0.0.0:P with SO_REUSEPORT; a process of another user tries to join it.
Observation reuseport_other_uid(Lab& lab) {
  if (::geteuid() != 0) {
    return lab.skip("bind", "a socket of another user needs root to create; run it with sudo to see it");
  }
  const auto address = lab.wildcard();
  const int on = 1;

  auto root = lab.actor("root's server", Role::server);
  const int listener = root.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  root.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
  root.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
  root.must("listen", ::listen(listener, 8));

  lab.you("start a second server as user " + std::to_string(kOtherUser) + ", the same address, SO_REUSEPORT=1");
  auto other = lab.spawn("uid " + std::to_string(kOtherUser), Role::server, [&](Trace& t) {
    // Groups first: after setuid() this process could no longer change them.
    t.must("setgroups", ::setgroups(0, nullptr), "none");
    t.must("setgid", ::setgid(kOtherUser), std::to_string(kOtherUser));
    t.must("setuid", ::setuid(kOtherUser), std::to_string(kOtherUser));
    const int fd = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
    if (t.call("bind", ::bind(fd, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(fd, 8));
    }
  });
  const auto answer = other.wait_for("bind");
  other.reap();
  for (const auto& event : lab.events()) {
    // Without that user (or in a user namespace that does not map it) the step cannot run here.
    const bool dropping = event.call == Call::setgroups || event.call == Call::setgid || event.call == Call::setuid;
    if (dropping && !event.ok()) return lab.skip("bind", "could not become another user: " + event.text());
  }
  const auto shown = listeners_in(lab, lab.show_sockets("the kernel's sockets for the port:"));
  lab.pause("see each listener's uid: ss -tlne sport = :" + std::to_string(lab.port()));

  auto observation = lab.observe(answer, {Evidence::listening}, shown);
  for (const auto& entry : lab.table()) {
    // The owner as the kernel records it, not as this program assumes it.
    if (entry.is(TcpState::listen) && !observation.fact("listener_uid")) {
      observation.fact("listener_uid", std::to_string(entry.uid));
    }
  }
  observation.fact("other_uid", std::to_string(kOtherUser));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const std::string kChinesePost = "\"端口复用 (bind error: Address already in use 问题)\"";

const Experiment kExperiment{
    .summary =
        "SO_REUSEPORT is not a second SO_REUSEADDR: it lets several live sockets of one user share an "
        "address and port, and the kernel spreads the connections over them. See what that means for a "
        "restart, for two servers at once, and for a server of another user.",
    .steps =
        {
            Step{
                .id = "restart-with-reuseport-both",
                .preview = "Serve a client, close first (TIME_WAIT), Ctrl+C, restart; both servers set SO_REUSEPORT=1.",
                .claim = "SO_REUSEPORT may be used instead of SO_REUSEADDR: set before bind(), it lets the server "
                         "restart at once despite the TIME_WAIT of its last connection.",
                .source = kChinesePost,
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::time_wait,
                         "The TIME_WAIT socket came from a connection the old listener accepted, and an accepted "
                         "socket inherits the listener's options, so the TIME_WAIT carries SO_REUSEPORT too. Linux "
                         "lets a socket with SO_REUSEPORT bind over a TIME_WAIT socket that has it as well (for "
                         "TIME_WAIT it does not even compare the owners). So SO_REUSEPORT did SO_REUSEADDR's job "
                         "here, because both the old and the new server set it. The next step drops that condition."},
                        {kOk, Situation::any,
                         "The new server bound at once. The socket table above shows what was left of the old one."},
                        {EADDRINUSE, Situation::time_wait,
                         "The kernel refused the restart although the old and the new socket both set SO_REUSEPORT: "
                         "this kernel does not let SO_REUSEPORT cover a TIME_WAIT socket."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused; the socket table above shows what still held the port."},
                    },
                .run = restart_with_reuseport_both,
            },
            Step{
                .id = "restart-with-reuseport-new-only",
                .preview = "The same restart, but only the new server sets SO_REUSEPORT=1 (the option was just added).",
                .claim = "Setting SO_REUSEPORT before bind() in the restarted server lets it bind at once, as "
                         "SO_REUSEADDR would.",
                .source = kChinesePost,
                .claimed = kOk,
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait,
                         "The TIME_WAIT socket belongs to a connection of the old server, which did not set "
                         "SO_REUSEPORT, so the TIME_WAIT does not carry it either. Linux shares an address through "
                         "SO_REUSEPORT only when every socket on it set the option, TIME_WAIT sockets included. "
                         "Adding the option to the code helps from the next restart on, not for the process that "
                         "was started before the change (socket(7) notes the same both-sides rule for "
                         "SO_REUSEADDR; experiment 05)."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused; the socket table above shows what still held the port."},
                        {kOk, Situation::time_wait,
                         "The new server bound over a TIME_WAIT that did not carry SO_REUSEPORT: this kernel lets "
                         "the option of the new socket alone decide, as some BSD systems do for SO_REUSEADDR."},
                        {kOk, Situation::any,
                         "The new server bound at once: nothing conflicting was left on the port (see the table)."},
                    },
                .run = restart_with_reuseport_new_only,
            },
            Step{
                .id = "two-listeners-reuseport",
                .preview = "Two sockets listen on 0.0.0.0:P, both with SO_REUSEPORT=1; then 200 clients connect.",
                .claim = "Sockets that all set SO_REUSEPORT before bind() may bind the same address and port; for "
                         "TCP listeners the kernel spreads the incoming connections over them.",
                .source = "socket(7), SO_REUSEPORT (Linux 3.9 and later)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::shared,
                         "Both sockets set SO_REUSEPORT before bind() and belong to the same user, so the kernel "
                         "grouped them for 0.0.0.0:P. For each new connection it hashes the connection's addresses "
                         "and ports (the 4-tuple) and lets the hash pick one listener of the group: the counts above "
                         "are two random halves, not a strict alternation. The flip side: starting the same server "
                         "twice no longer fails with 'Address already in use'; both copies silently take traffic. "
                         "This step tried TCP listeners only; UDP sockets share a port in experiment 12."},
                        {kOk, Situation::any,
                         "The second listener was accepted on the same address and port; the socket table above "
                         "shows what the kernel keeps for it."},
                        {EADDRINUSE, Situation::any,
                         "The kernel refused the second listener although both set SO_REUSEPORT before bind(): this "
                         "kernel does not let listeners share a port this way (SO_REUSEPORT came with Linux 3.9)."},
                    },
                .run = two_listeners_reuseport,
            },
            Step{
                .id = "reuseport-other-uid",
                .preview = "Root listens on 0.0.0.0:P with SO_REUSEPORT=1; a process of user 65534 tries to join.",
                .claim = "To prevent port hijacking, all sockets sharing an address through SO_REUSEPORT must be "
                         "created by the same effective user: a process of another user is refused.",
                .source = "socket(7), SO_REUSEPORT",
                .claimed = EADDRINUSE,
                .said = Said::reference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::listener,
                         "Root's listener and the new socket both set SO_REUSEPORT, but the new socket was created by "
                         "another user. Linux admits a socket into a SO_REUSEPORT group only when its owner (the "
                         "effective uid at socket()) is the owner of the sockets already there. Otherwise any local "
                         "user could start a listener on the port of someone else's server and receive a share of "
                         "its clients, and of what they send: port hijacking."},
                        {EADDRINUSE, Situation::any,
                         "The process of the other user was refused; the socket table above shows what held the port."},
                        {kOk, Situation::any,
                         "A process of another user joined root's listening port: this kernel does not apply the "
                         "same-user rule that socket(7) documents for SO_REUSEPORT."},
                    },
                .run = reuseport_other_uid,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
