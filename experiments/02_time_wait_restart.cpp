// 02-time-wait-restart: Ctrl+C, restart, "Address already in use": the server's TIME_WAIT.
//
// Shows: a server that answered a client and closed the connection first leaves a TIME_WAIT
// socket bound to its port. Stopped with Ctrl+C and started again as a new process, it fails in
// bind() with EADDRINUSE although no process owns the port any more; the kernel's timer on that
// socket shows how long Linux keeps it (60 s, not the "2 to 4 minutes" of older stacks).
//
// Articles: "Socket programming small problem: Address already in use" (the Ctrl+C story and its
// receipt server) and "Port reuse C++ (address reuse)" (IBM developerWorks, TIME_WAIT blocks
// bind). Lesson: lessons/02-time-wait-restart.md
//
// Usage: 02-time-wait-restart [--port P] [--json] [--no-color] [--step] [--record FILE]
#include <csignal>

#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"
#include "portreuse/time_wait.hpp"

namespace {

using namespace portreuse;

// The Ctrl+C article's run: the server answers one message with a receipt and closes first; then
// Ctrl+C, and the same server is started again without any socket option.
Observation restart_after_server_close(StepContext& context) {
  RestartPlan plan;
  plan.serve_one_client = true;
  plan.first_to_close = FirstToClose::server;
  plan.reply = Reply::receipt;
  plan.stop_signal = SIGINT;
  auto observation = restart_server(context, plan);
  if (observation.could_not_run) return observation;
  report_time_waits(context, context.port(), observation);
  return observation;
}

const Experiment kExperiment{
    .number = "02",
    .slug = "time-wait-restart",
    .title = "Ctrl+C, restart, Address already in use: the server's TIME_WAIT",
    .summary =
        "The restart failure everyone meets: a server talks to a client, closes the connection first, is "
        "stopped with Ctrl+C and started again. Watch which socket the kernel keeps, for how long, and "
        "why bind() refuses the new process.",
    .steps =
        {
            Step{
                .id = "restart-after-server-close",
                .preview = "A server answers one client and closes first; Ctrl+C; a new server process binds "
                           "0.0.0.0:P without options.",
                .claim = "After Ctrl+C, a server that has talked to a client cannot be started again at once: "
                         "bind() fails with 'Address already in use', because the closed connection stays in "
                         "TIME_WAIT (about 2 to 4 minutes) and blocks the port.",
                .source = "\"Socket programming small problem: Address already in use\"; \"Port reuse C++ "
                          "(address reuse)\" (IBM developerWorks)",
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "time-wait",
                         "The old server closed its end of the connection first, so that socket took the active "
                         "close path (FIN_WAIT_1, FIN_WAIT_2) into TIME_WAIT. Ctrl+C ended the process and its "
                         "listener, but the TIME_WAIT socket belongs to the kernel, not to the process: it is "
                         "still bound to port P, and a bind() without options conflicts with it. The timer shown "
                         "above is that wait: Linux holds TIME_WAIT for TCP_TIMEWAIT_LEN, a constant of 60 seconds "
                         "compiled into the kernel (net.ipv4.tcp_fin_timeout does not change it), so it reads just "
                         "under 60 s. The IBM "
                         "article's '2 to 4 minutes' is 2 x MSL with the 2-minute MSL of the original TCP "
                         "specification, which older stacks used; experiment 14 measures the real wait with "
                         "--long, and experiment 05 restarts at once with SO_REUSEADDR."},
                        {"EADDRINUSE", "",
                         "The restart was refused, but not because of a TIME_WAIT on port P: the socket table "
                         "above shows what the kernel still held for the port when the new server tried."},
                        {"ok", "clean",
                         "The new server bound port P at once: the table above listed nothing bound to P before "
                         "the restart, so the connection left no TIME_WAIT on the server's port. That happens "
                         "when the client's FIN arrives first; the TIME_WAIT then belongs to the client "
                         "(experiment 03)."},
                        {"ok", "time-wait",
                         "A TIME_WAIT socket was bound to port P (see the table above), yet a bind() without "
                         "options passed. Linux refuses that; this kernel follows other rules than the ones the "
                         "lesson describes."},
                        {"ok", "",
                         "The new server bound port P at once; the table above shows what the kernel held for the "
                         "port before the restart."},
                    },
                .run = restart_after_server_close,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
