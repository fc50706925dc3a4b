// 01-same-port-twice: two servers, one port: what really conflicts.
//
// Shows: a second live listener on 0.0.0.0:P is refused (EADDRINUSE), but a server that never
// accepted a connection can be stopped with Ctrl+C and started again at once: the famous restart
// failure needs a connection's TIME_WAIT (experiment 02), not merely an earlier server.
//
// Articles: "Port reuse So_Reuseaddr" (two servers on one port) and "Socket programming small
// problem: Address already in use" (Ctrl+C, then restart). Lesson: lessons/01-same-port-twice.md
//
// Usage: build/default/bin/01-same-port-twice [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

// Two real server processes on 0.0.0.0:P, like starting the same server in two terminals.
Observation two_listeners_same_port(Lab& lab) {
  const auto address = lab.wildcard();

  lab.you("start the server in one terminal");
  auto first = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    t.wait_for_signal();
  });
  first.must_reach("listen");
  const auto before = lab.show_sockets("the kernel's sockets for the port:");
  lab.pause("one server listens: ss -tlnp sport = :" + std::to_string(lab.port()));

  // The same program in a second terminal: the same calls, the same address.
  lab.you("start the same server again in a second terminal");
  auto second = lab.spawn("second server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  // bind() answers the step; when it passes, listen() is where a refusal would come instead.
  auto answer = second.wait_for("bind");
  if (answer && answer->ok()) {
    if (auto listened = second.wait_for("listen"); listened && !listened->ok()) answer = listened;
  }
  return lab.observe(answer, {Evidence::listening}, before);
}

// Ctrl+C on a server that never had a client, then an immediate restart.
Observation restart_no_history(Lab& lab) {
  const auto address = lab.wildcard();

  lab.you("start the server; no client ever connects");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    t.wait_for_signal();
  });
  server.must_reach("listen");
  lab.pause("the server listens: ss -tlnp sport = :" + std::to_string(lab.port()));

  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("the server is gone: ss -tano sport = :" + std::to_string(lab.port()));

  lab.you("start the server again at once: a new process, no socket options");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  return lab.observe(restarted.wait_for("bind"), {Evidence::listening, Evidence::server_stopped}, left_behind);
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "Two live servers cannot share 0.0.0.0:P. But stopping a server and starting it again is not, by "
        "itself, what makes bind() fail: watch what the kernel keeps when no client ever connected.",
    .steps =
        {
            Step{
                .id = "two-listeners-same-port",
                .preview = "Start a server on 0.0.0.0:P, then start a second one on the same address and port.",
                .claim = "Two servers cannot listen on the same port: the second gets 'Address already in use'.",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::listener,
                         "A listening socket already owns 0.0.0.0:P, and the kernel gives a listening address to "
                         "one socket only (without SO_REUSEPORT on both): otherwise it could not tell which "
                         "server a new connection belongs to."},
                        {EADDRINUSE, Situation::any,
                         "The kernel refused the second bind(). The socket table above shows what held the port."},
                        {kOk, Situation::any,
                         "Both servers are listening on the same address and port. On Linux that needs "
                         "SO_REUSEPORT on both sockets; neither set it here, so this kernel follows other rules "
                         "than the ones this lesson describes."},
                    },
                .run = two_listeners_same_port,
            },
            Step{
                .id = "restart-no-history",
                .preview = "Start a server, press Ctrl+C before any client connects, start it again at once.",
                .claim = "A server stopped with Ctrl+C cannot be started again at once: bind() fails with "
                         "'Address already in use' until some time has passed.",
                .source = "\"Socket programming small problem: Address already in use\"",
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {kOk, Situation::clean,
                         "When SIGINT ended the server, the kernel closed its listening socket, and a listener "
                         "that never had a connection leaves nothing behind: the socket table was empty and the "
                         "new server bound at once. The article's restart failed because its server had talked "
                         "to a client first; experiment 02 shows that case."},
                        {kOk, Situation::any,
                         "The new server bound the port at once: nothing left by the old one conflicted with it."},
                        {EADDRINUSE, Situation::time_wait,
                         "A TIME_WAIT socket held the port although this server never accepted a connection; "
                         "something else used the port in between (see the socket table above)."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused. The socket table above shows what the kernel still held for "
                         "the port; with no connection ever made, nothing of the old server should be there."},
                    },
                .run = restart_no_history,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
