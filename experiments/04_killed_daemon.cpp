// 04-killed-daemon: a killed daemon whose child still serves a connection.
//
// Shows: a daemon listens on 0.0.0.0:P and forks a child for each connection it accepts. The
// listening process is killed with SIGKILL while its child still holds an ESTABLISHED connection
// on port P. Restarting the daemon without SO_REUSEADDR fails; with SO_REUSEADDR on the old and
// the new listener it works, and the child's connection is left alone.
//
// Article: "Example of the SO_REUSEADDR Option" (HP-UX, BSD Sockets Interface Programmer's Guide,
// B2355-90136, chapter 3). Lesson: lessons/04-killed-daemon.md
//
// Usage: 04-killed-daemon [--port P] [--json] [--no-color] [--step]
#include <csignal>

#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// The HP-UX daemon: the listener forks a child per connection, then the listener is killed.
RestartPlan killed_daemon_plan() {
  RestartPlan plan;
  plan.serve_one_client = true;
  plan.fork_per_connection = true;
  plan.stop_signal = SIGKILL;
  return plan;
}

Observation restart_while_child_holds_connection(StepContext& context) {
  return restart_server(context, killed_daemon_plan());
}

Observation restart_while_child_holds_connection_reuseaddr(StepContext& context) {
  auto plan = killed_daemon_plan();
  plan.old_options.reuse_address = 1;
  plan.new_options.reuse_address = 1;
  return restart_server(context, plan);
}

const std::string kSource = "\"Example of the SO_REUSEADDR Option\" (HP-UX B2355-90136, ch. 3)";

const Experiment kExperiment{
    .number = "04",
    .slug = "killed-daemon",
    .title = "A killed daemon whose child still serves",
    .summary =
        "A forking daemon is killed while one of its children still talks to a client. The connection the child "
        "holds is bound to the daemon's port, so the restarted daemon has to share the port with it: watch when "
        "the kernel allows that.",
    .steps =
        {
            Step{
                .id = "restart-while-child-holds-connection",
                .preview = "A daemon on 0.0.0.0:P forks a child for a client; kill the daemon (SIGKILL) while the "
                           "child still serves, then start it again without SO_REUSEADDR.",
                .claim = "Restarting a killed daemon fails while a connection it accepted is still open: the "
                         "wildcard bind matches the address of that connection.",
                .source = kSource,
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "connection",
                         "The child's ESTABLISHED socket was made by accept() on the old listener, so it carries "
                         "the listener's local port P and sits in the same bind bucket as any socket bound to P. "
                         "The new listener asked for 0.0.0.0:P, which overlaps every local address, and it did not "
                         "set SO_REUSEADDR: without the option on both sockets Linux lets nothing else share the "
                         "port, not even a connection whose listener is already gone."},
                        {"EADDRINUSE", "listener",
                         "A listening socket still held the port after the kill: some process besides the killed "
                         "daemon still had the listener open (the socket table above shows it)."},
                        {"EADDRINUSE", "time-wait",
                         "Only a TIME_WAIT socket was left on the port, so the child's connection had already "
                         "closed; the refusal came from that TIME_WAIT socket (experiment 02), not from a live "
                         "connection."},
                        {"EADDRINUSE", "",
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {"ok", "clean",
                         "Nothing was bound to the port any more when the daemon restarted: the child's connection "
                         "had ended before the restart, so this run did not test the article's situation."},
                        {"ok", "",
                         "The new listener bound 0.0.0.0:P although a connection on P was still open and neither "
                         "socket had SO_REUSEADDR. This kernel follows other rules than the ones this lesson "
                         "describes."},
                    },
                .run = restart_while_child_holds_connection,
            },
            Step{
                .id = "restart-while-child-holds-connection-reuseaddr",
                .preview = "The same, but the old and the new daemon set SO_REUSEADDR=1 before bind().",
                .claim = "With SO_REUSEADDR set, bind() ignores the match with the open connection and the killed "
                         "daemon can be restarted.",
                .source = kSource,
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "connection",
                         "The new listener set SO_REUSEADDR, and so did the old one: the child's ESTABLISHED socket "
                         "was cloned from that listener by accept() and kept its SO_REUSEADDR=1. Linux lets two "
                         "sockets share a port when both have the option and the one already there is not "
                         "listening, so the bind went through next to the child's connection (the table above)."},
                        {"ok", "",
                         "The new listener bound the port at once. The socket table above shows what it shared the "
                         "port with."},
                        {"EADDRINUSE", "listener",
                         "A listening socket still held the port after the kill. SO_REUSEADDR never lets a second "
                         "socket share a port with a live listener on Linux (experiment 07)."},
                        {"EADDRINUSE", "",
                         "The restart was refused although both daemons set SO_REUSEADDR and only a connection, not "
                         "a listener, held the port. This kernel follows other rules than the ones this lesson "
                         "describes; the socket table above shows what was there."},
                    },
                .run = restart_while_child_holds_connection_reuseaddr,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
