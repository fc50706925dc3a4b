// 02-time-wait-restart: Ctrl+C, restart, "Address already in use": the server's TIME_WAIT.
//
// Shows: a server answers one client and closes the connection first, so its end of the
// connection goes into TIME_WAIT, bound to the server's port. Ctrl+C (a real SIGINT) ends the
// process; a new server process then fails in bind() with EADDRINUSE although no process owns
// the port any more. The kernel's timer on that socket shows how long Linux keeps it: 60 s, not
// the "2 to 4 minutes" of older stacks.
//
// Articles: "Socket programming small problem: Address already in use" (the Ctrl+C story and
// its receipt server) and "Port reuse C++ (address reuse)", quoting IBM developerWorks (TIME_WAIT
// blocks bind). Lesson: lessons/02-time-wait-restart.md
//
// Usage: build/default/bin/02-time-wait-restart [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

Observation restart_after_server_close(Lab& lab) {
  const auto address = lab.wildcard();  // 0.0.0.0:P, INADDR_ANY as in the article's server

  // The article's server: one client, a fixed receipt, and it hangs up first.
  lab.you("start the server");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must_receive_text(connection);  // the client's hello: no answer without it
    t.send_text(connection, "message received");
    t.must("close", ::close(connection));  // the server closes first: the TIME_WAIT will be its own
    t.wait_for_signal();
  });
  server.must_reach("listen");

  // The client connects, says hello, reads the receipt and then the end of stream.
  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);  // the receipt
  server.must_reach("close");
  client.receive_text(fd);  // 0 bytes: end of stream, because the server closed first
  client.must("close", ::close(fd));
  lab.show_sockets("the kernel's sockets for the port now:");

  // Ctrl+C: a real SIGINT ends the old server process.
  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("the old server is gone; look at the port now: ss -tano state time-wait");

  // The same program started again: a new process, no socket options.
  lab.you("start the server again: a new process, no socket options");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
    return 0;
  });
  auto observation = lab.observe(
      restarted.wait_for("bind"),
      {Evidence::accepted, Evidence::exchanged, Evidence::server_closed_first, Evidence::server_stopped}, left_behind);
  lab.report_time_waits(observation);
  return observation;
}

// ---- The claim, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "The restart failure everyone meets: a server talks to a client, closes the connection first, is "
        "stopped with Ctrl+C and started again. Watch which socket the kernel keeps, for how long, and "
        "why bind() refuses the new process.",
    .steps =
        {
            Step{
                .id = "restart-after-server-close",
                .preview = "A server answers one client and closes first; Ctrl+C; a new server process binds "
                           "0.0.0.0 on the same port without options.",
                .claim = "After Ctrl+C, a server that has talked to a client cannot be started again at once: "
                         "bind() fails with 'Address already in use', because the closed connection stays in "
                         "TIME_WAIT (about 2 to 4 minutes) and blocks the port.",
                .source = "\"Socket programming small problem: Address already in use\"; \"Port reuse C++ "
                          "(address reuse)\" (IBM developerWorks)",
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait,
                         "The old server closed its end of the connection first, so that socket took the active "
                         "close path (FIN_WAIT_1, FIN_WAIT_2) into TIME_WAIT. Ctrl+C ended the process and its "
                         "listener, but the TIME_WAIT socket belongs to the kernel, not to the process: it is "
                         "still bound to the port, and a bind() without options conflicts with it. Its timer, "
                         "listed in the table, is that wait: Linux holds TIME_WAIT for TCP_TIMEWAIT_LEN, 60 "
                         "seconds compiled into the kernel (net.ipv4.tcp_fin_timeout does not change it); an "
                         "in-window RST can end it sooner (RFC 1337; lesson 14). The IBM article's '2 to 4 "
                         "minutes' is twice a Maximum Segment Lifetime of one to two minutes, as older stacks "
                         "used; experiment 14 measures the real wait, and experiment 05 restarts at once with "
                         "SO_REUSEADDR."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused, but not because of a TIME_WAIT on the port: the socket table "
                         "listed in the step shows what the kernel still held for the port when the new server "
                         "tried."},
                        {kOk, Situation::clean,
                         "The new server bound the port at once: the table listed nothing bound to it before the "
                         "restart, so the connection left no TIME_WAIT on the server's port. That happens when "
                         "the client's FIN arrives first; the TIME_WAIT then belongs to the client (experiment "
                         "03)."},
                        {kOk, Situation::time_wait,
                         "A TIME_WAIT socket was bound to the port (see the table), yet a bind() without options "
                         "passed. Linux refuses that; this kernel follows other rules than the ones the lesson "
                         "describes."},
                        {kOk, Situation::any,
                         "The new server bound the port at once; the table shows what the kernel held for the "
                         "port before the restart."},
                    },
                .run = restart_after_server_close,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
