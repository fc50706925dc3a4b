// 03-who-closes-first: who closes first keeps the TIME_WAIT.
//
// Shows: the TIME_WAIT belongs to the side that sends the first FIN. When the client closes
// first, its socket waits out TIME_WAIT on its own ephemeral port, the server's port is left
// free, and a server stopped with Ctrl+C starts again at once without any socket option.
//
// Article: "端口复用 (bind error: Address already in use 问题)" (port reuse; its upper-casing echo
// server). Lesson: lessons/03-who-closes-first.md
//
// Usage: build/default/bin/03-who-closes-first [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

// The Chinese article's echo server, but this time the client hangs up first; then Ctrl+C and a
// restart without any socket option.
Observation restart_after_client_close(Lab& lab) {
  const auto address = lab.wildcard();
  const auto port = std::to_string(lab.port());

  // The echo server: it answers in capitals, then waits for the client to hang up, and only
  // then closes its own end: the passive close.
  lab.you("start the echo server");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    std::string echo = t.must_receive_text(connection);  // the client's hello: nothing to echo without it
    for (char& letter : echo) letter = static_cast<char>(std::toupper(static_cast<unsigned char>(letter)));
    t.send_text(connection, echo);
    t.receive_text(connection);  // 0 bytes: the client's FIN came first
    t.must("close", ::close(connection));
    t.wait_for_signal();
  });
  server.must_reach("listen");
  lab.pause("the server listens: ss -tlnp sport = :" + port);

  // The client says hello, reads the echo and hangs up first: the active close is its own.
  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);            // the echo
  client.must("close", ::close(fd));  // the client closes first: the TIME_WAIT will be its own
  server.must_reach("close");
  lab.show_sockets("the kernel's sockets for the port now:");

  // Ctrl+C: a real SIGINT ends the old server process.
  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto held = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("whose TIME_WAIT is it? ss -tano dport = :" + port);

  // show_sockets() sorts by what holds port P itself; the client's TIME_WAIT keeps another port.
  const auto left_behind =
      held == Situation::clean && lab.time_waits_shown(Role::client) > 0 ? Situation::client_time_wait : held;

  lab.you("start the server again: a new process, no socket options");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  auto observation = lab.observe(restarted.wait_for("bind"),
                                 {Evidence::accepted, Evidence::exchanged, Evidence::client_closed_first,
                                  Evidence::server_stopped, Evidence::time_wait_seen},
                                 left_behind);
  lab.report_time_waits(observation);
  return observation;
}

// ---- The claim, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "The same Ctrl+C and restart as experiment 02, with one change: the client hangs up first. Watch "
        "which side's socket ends in TIME_WAIT, which port it keeps, and whether the server can restart.",
    .steps =
        {
            Step{
                .id = "restart-after-client-close",
                .preview = "The client closes first; the echo server closes after it; Ctrl+C; a new server process "
                           "binds 0.0.0.0:P without options.",
                .claim = "Only the side that closes the connection first waits 2MSL in TIME_WAIT. A server that "
                         "closed first cannot restart at once; so when the client closes first, the server's "
                         "port is free and a restart succeeds.",
                .source = "\"端口复用 (bind error: Address already in use 问题)\" (port reuse)",
                .claimed = kOk,
                .said = Said::inference,
                .explanations =
                    {
                        {kOk, Situation::client_time_wait,
                         "The client sent the first FIN, so its socket took the active close path into TIME_WAIT, "
                         "on the client's own ephemeral port (shown above, pointing at P). The server received "
                         "that FIN, closed in turn and went through CLOSE_WAIT and LAST_ACK to CLOSED: the passive "
                         "closer keeps nothing. Nothing was bound to port P any more, so the plain bind() passed. "
                         "The TIME_WAIT still exists for its 60 s, but it now ties up one of the client's "
                         "ephemeral ports (experiment 13 shows what many of those do)."},
                        {kOk, Situation::clean,
                         "The new server bound port P, and the table above showed no TIME_WAIT on either side "
                         "just before the restart, although one was seen earlier in the step."},
                        {kOk, Situation::any,
                         "The new server bound port P at once; the table above shows what the kernel held before "
                         "the restart."},
                        {EADDRINUSE, Situation::time_wait,
                         "Although the client closed first, the table showed a TIME_WAIT on the server's side, "
                         "bound to port P: both sides closed at nearly the same moment (a simultaneous close "
                         "leaves TIME_WAIT on both). That is experiment 02's situation, and the restart is "
                         "refused for the same reason."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused by something other than a TIME_WAIT on port P: the socket table "
                         "above shows what the kernel still held for the port."},
                    },
                .run = restart_after_client_close,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
