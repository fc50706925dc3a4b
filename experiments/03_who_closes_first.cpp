// 03-who-closes-first: who closes first keeps the TIME_WAIT.
//
// Shows: the TIME_WAIT belongs to the side that sends the first FIN. When the client closes
// first, its socket waits out TIME_WAIT on its own ephemeral port, the server's port is left
// free, and a server stopped with Ctrl+C starts again at once without any socket option.
//
// Article: "端口复用 (bind error: Address already in use 问题)" (port reuse; its upper-casing echo
// server). Lesson: lessons/03-who-closes-first.md
//
// Usage: 03-who-closes-first [--port P] [--json] [--no-color] [--step] [--record FILE]
#include <csignal>

#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"
#include "portreuse/time_wait.hpp"

namespace {

using namespace portreuse;

// Where the TIME_WAIT was when the new server called bind(): what decides this step. A live
// socket still bound to the port outranks it.
std::string situation_after(const Observation& observation) {
  if (observation.situation == "listener" || observation.situation == "connection") return observation.situation;
  const auto side = time_wait_side_of(observation);
  if (side == "client" || side == "server") return "time-wait-on-" + side;
  return "no-time-wait";
}

// The Chinese article's echo server, but this time the client hangs up first; then Ctrl+C and a
// restart without any socket option.
Observation restart_after_client_close(StepContext& context) {
  RestartPlan plan;
  plan.serve_one_client = true;
  plan.first_to_close = FirstToClose::client;
  plan.reply = Reply::uppercase;
  plan.stop_signal = SIGINT;
  auto observation = restart_server(context, plan);
  if (observation.could_not_run) return observation;
  observation.situation = situation_after(observation);
  report_time_waits(context, context.port(), observation);
  return observation;
}

const Experiment kExperiment{
    .number = "03",
    .slug = "who-closes-first",
    .title = "Who closes first keeps the TIME_WAIT",
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
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "time-wait-on-client",
                         "The client sent the first FIN, so its socket took the active close path into TIME_WAIT, "
                         "on the client's own ephemeral port (shown above, pointing at P). The server received "
                         "that FIN, closed in turn and went through CLOSE_WAIT and LAST_ACK to CLOSED: the passive "
                         "closer keeps nothing. Nothing was bound to port P any more, so the plain bind() passed. "
                         "The TIME_WAIT still exists for its 60 s, but it now ties up one of the client's "
                         "ephemeral ports (experiment 13 shows what many of those do)."},
                        {"ok", "no-time-wait",
                         "The new server bound port P, and the table above showed no TIME_WAIT on either side "
                         "before the restart: the connection ended without one (for example by a reset)."},
                        {"ok", "",
                         "The new server bound port P at once; the table above shows what the kernel held before "
                         "the restart."},
                        {"EADDRINUSE", "time-wait-on-server",
                         "Although the client was meant to close first, the table showed the TIME_WAIT on the "
                         "server's side, bound to port P: the server's FIN went out first, or both sides closed "
                         "at the same moment (a simultaneous close leaves TIME_WAIT on both). That is experiment "
                         "02's situation, and the restart is refused for the same reason."},
                        {"EADDRINUSE", "",
                         "The restart was refused by something other than a TIME_WAIT on port P: the socket table "
                         "above shows what the kernel still held for the port."},
                    },
                .run = restart_after_client_close,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
