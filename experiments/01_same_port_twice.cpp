// 01-same-port-twice: two servers, one port: what really conflicts.
//
// Shows: a second live listener on 0.0.0.0:P is refused (EADDRINUSE), but a server that never
// accepted a connection can be stopped with Ctrl+C and started again at once: the famous restart
// failure needs a connection's TIME_WAIT (experiment 02), not merely an earlier server.
//
// Articles: "Port reuse So_Reuseaddr" (two servers on one port) and "Socket programming small
// problem: Address already in use" (Ctrl+C, then restart). Lesson: lessons/01-same-port-twice.md
//
// Usage: 01-same-port-twice [--port P] [--json] [--no-color] [--step]
#include <csignal>

#include "portreuse/child.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// Two real server processes on 0.0.0.0:P, like starting the same server in two terminals.
Observation two_listeners_same_port(StepContext& context) {
  ServerPlan plan;
  plan.address = context.wildcard(context.port());
  context.narrator().line("you", "start the server in one terminal");
  auto first = ServerProcess::start(plan);
  if (!first) return Observation::failed_setup("fork: " + describe_outcome(first.error()));
  const auto listening = follow_server(context, *first, "listen");
  if (!listening || !listening->ok()) return Observation::failed_setup("the first server could not listen");

  context.narrator().line("you", "start the same server again in a second terminal");
  auto second = ServerProcess::start(plan);
  if (!second) return Observation::failed_setup("fork: " + describe_outcome(second.error()));
  const auto bound = follow_server(context, *second, "bind");
  if (!bound) return Observation::failed_setup("the second server reported nothing");
  Observation observation;
  observation.call = "bind";
  observation.outcome = parse_outcome(bound->outcome).value_or(make_error(EIO));
  if (bound->ok()) {
    const auto listened = follow_server(context, *second, "listen");
    if (listened && !listened->ok()) {
      observation.call = "listen";
      observation.outcome = parse_outcome(listened->outcome).value_or(make_error(EIO));
    }
  }
  const auto holders = context.show_sockets(context.port(), "the kernel's sockets for the port:");
  observation.situation = classify_holders(holders);
  return observation;
}

// Ctrl+C on a server that never had a client, then an immediate restart.
Observation restart_no_history(StepContext& context) {
  RestartPlan plan;
  plan.serve_one_client = false;
  plan.stop_signal = SIGINT;
  return restart_server(context, plan);
}

const Experiment kExperiment{
    .number = "01",
    .slug = "same-port-twice",
    .title = "Two servers, one port: what really conflicts",
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
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "listener",
                         "A listening socket already owns 0.0.0.0:P, and the kernel gives a listening address to "
                         "one socket only (without SO_REUSEPORT on both): otherwise it could not tell which "
                         "server a new connection belongs to."},
                        {"EADDRINUSE", "",
                         "The kernel refused the second bind(). The socket table above shows what held the port."},
                        {"ok", "",
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
                .claimed = "EADDRINUSE",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "clean",
                         "When SIGINT ended the server, the kernel closed its listening socket, and a listener "
                         "that never had a connection leaves nothing behind: the socket table was empty and the "
                         "new server bound at once. The article's restart failed because its server had talked "
                         "to a client first; experiment 02 shows that case."},
                        {"ok", "",
                         "The new server bound the port at once: nothing left by the old one conflicted with it."},
                        {"EADDRINUSE", "time-wait",
                         "A TIME_WAIT socket held the port although this server never accepted a connection; "
                         "something else used the port in between (see the socket table above)."},
                        {"EADDRINUSE", "",
                         "The restart was refused. The socket table above shows what the kernel still held for "
                         "the port; with no connection ever made, nothing of the old server should be there."},
                    },
                .run = restart_no_history,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
