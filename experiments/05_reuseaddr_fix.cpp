// 05-reuseaddr-fix: the SO_REUSEADDR fix, and when it is not enough.
//
// Shows: a server that served a client and closed the connection first leaves a TIME_WAIT socket
// on its port; it is stopped with Ctrl+C and started again at once. With SO_REUSEADDR=1 on the
// old and the new server the restart works. When only the new server sets it (the first restart
// after the fix is added), Linux still refuses; SO_REUSEADDR=0 is the same as not setting it; and
// setting it after bind() is too late.
//
// Articles: "Port reuse C++ (address reuse)" (IBM developerWorks, l-sockpit), "Socket programming
// small problem: Address already in use" and "端口复用 (bind error: Address already in use 问题)".
// Lesson: lessons/05-reuseaddr-fix.md
//
// Usage: 05-reuseaddr-fix [--port P] [--json] [--no-color] [--step]
#include <csignal>
#include <optional>

#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// Every step: the old server serves one client, closes first (TIME_WAIT on its side), gets Ctrl+C.
RestartPlan restart_after_time_wait(std::optional<int> old_reuse, std::optional<int> new_reuse) {
  RestartPlan plan;
  plan.serve_one_client = true;
  plan.first_to_close = FirstToClose::server;
  plan.stop_signal = SIGINT;
  plan.old_options.reuse_address = old_reuse;
  plan.new_options.reuse_address = new_reuse;
  return plan;
}

Observation restart_with_reuseaddr_both(StepContext& context) {
  return restart_server(context, restart_after_time_wait(1, 1));
}

Observation restart_with_reuseaddr_new_only(StepContext& context) {
  return restart_server(context, restart_after_time_wait(std::nullopt, 1));
}

Observation restart_with_reuseaddr_zero(StepContext& context) {
  return restart_server(context, restart_after_time_wait(0, 0));
}

// The old server did it right; the new one calls bind() first and sets the option afterwards, so
// the order of the two calls is the only difference from restart-with-reuseaddr-both.
Observation setsockopt_after_bind(StepContext& context) {
  auto plan = restart_after_time_wait(1, std::nullopt);
  plan.new_options_after_bind.reuse_address = 1;
  return restart_server(context, plan);
}

const std::string kIbm = "\"Port reuse C++ (address reuse)\" (IBM developerWorks, l-sockpit)";
const std::string kIbmAndCtrlC = kIbm + "; \"Socket programming small problem: Address already in use\"";
const std::string kChinesePost = "\"端口复用 (bind error: Address already in use 问题)\"";

const std::string kNothingHeld =
    "Nothing was bound to the port when the server restarted: the old server's connection left no TIME_WAIT "
    "socket behind this time, so this run did not test SO_REUSEADDR at all.";
const std::string kListenerLeft =
    "A listening socket still held the port: the old server had not really let go of it. SO_REUSEADDR never "
    "lets a socket share a port with a live listener on Linux (experiment 07).";

const Experiment kExperiment{
    .number = "05",
    .slug = "reuseaddr-fix",
    .title = "The SO_REUSEADDR fix, and when it is not enough",
    .summary =
        "Every step restarts a server whose last connection left a TIME_WAIT socket on its port. The usual fix is "
        "SO_REUSEADDR=1 before bind(); see what the kernel makes of it when both servers set it, when only the new "
        "one does, when the value is 0, and when it comes after bind().",
    .steps =
        {
            Step{
                .id = "restart-with-reuseaddr-both",
                .preview = "Old and new server set SO_REUSEADDR=1 before bind(); serve a client, close first, "
                           "Ctrl+C, restart.",
                .claim = "With SO_REUSEADDR=1 set before bind(), a restarted server can use its port at once, "
                         "although the old connection is still in TIME_WAIT.",
                .source = kIbmAndCtrlC,
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "time-wait",
                         "The old connection's TIME_WAIT socket was still bound to the port, but it came from a "
                         "listener with SO_REUSEADDR=1 and kept that setting. The new socket had the option too, "
                         "and a TIME_WAIT socket is not listening: Linux lets the two share the port, and TIME_WAIT "
                         "goes on protecting the old connection's four-tuple."},
                        {"ok", "clean", kNothingHeld},
                        {"ok", "", "The restart bound the port at once; the socket table above shows what was left."},
                        {"EADDRINUSE", "listener", kListenerLeft},
                        {"EADDRINUSE", "",
                         "The restart was refused although both servers set SO_REUSEADDR=1 and only a TIME_WAIT "
                         "socket was left. This kernel follows other rules than the ones this lesson describes."},
                    },
                .run = restart_with_reuseaddr_both,
            },
            Step{
                .id = "restart-with-reuseaddr-new-only",
                .preview = "The old server had no SO_REUSEADDR; only the restarted one sets it (the first restart "
                           "after someone adds the fix).",
                .claim = "Setting SO_REUSEADDR=1 before bind() in the server being started is what lets it reuse "
                         "the port at once.",
                .source = kIbmAndCtrlC,
                .claimed = "ok",
                .expected_linux = "EADDRINUSE",
                .elsewhere =
                    "Documented, not observed here: on the BSDs the flag of the socket being bound decides. The "
                    "Stack Overflow answer \"How do SO_REUSEADDR and SO_REUSEPORT differ?\" describes a TIME_WAIT "
                    "socket as simply ignored when the new socket has SO_REUSEADDR, and FreeBSD's in_pcbbind_setup() "
                    "then looks only for an exact address match, so this restart would bind there.",
                .explanations =
                    {
                        {"EADDRINUSE", "time-wait",
                         "The new socket had SO_REUSEADDR=1, but the TIME_WAIT socket on the port did not: it was "
                         "the old server's connection, accepted by a listener without the option, and a TIME_WAIT "
                         "socket keeps the setting its socket had. Linux lets two sockets share a port only when "
                         "both have SO_REUSEADDR, so the old server's setting still counts after it is gone. This "
                         "restart has to wait for TIME_WAIT to end (the timer in the table above); later restarts, "
                         "with both servers setting the option, work at once (restart-with-reuseaddr-both)."},
                        {"EADDRINUSE", "listener", kListenerLeft},
                        {"EADDRINUSE", "",
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {"ok", "time-wait",
                         "The new server bound the port although the TIME_WAIT socket came from a server without "
                         "SO_REUSEADDR: on this kernel the new socket's flag alone was enough, as on the BSDs."},
                        {"ok", "clean", kNothingHeld},
                        {"ok", "", "The restart bound the port at once; the socket table above shows what was left."},
                    },
                .run = restart_with_reuseaddr_new_only,
            },
            Step{
                .id = "restart-with-reuseaddr-zero",
                .preview = "Old and new server set SO_REUSEADDR=0 explicitly; serve a client, close first, Ctrl+C, "
                           "restart.",
                .claim = "The option value decides: 1 allows reuse, 0 forbids it, so with 0 the restart fails "
                         "while TIME_WAIT lasts.",
                .source = kIbm,
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "time-wait",
                         "Setting SO_REUSEADDR to 0 is the same as never setting it (0 is the default): neither "
                         "the new socket nor the TIME_WAIT socket allowed sharing, so the port stays blocked until "
                         "TIME_WAIT ends."},
                        {"EADDRINUSE", "listener", kListenerLeft},
                        {"EADDRINUSE", "",
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {"ok", "clean", kNothingHeld},
                        {"ok", "",
                         "The restart bound the port at once although both servers set SO_REUSEADDR=0. This kernel "
                         "follows other rules than the ones this lesson describes."},
                    },
                .run = restart_with_reuseaddr_zero,
            },
            Step{
                .id = "setsockopt-after-bind",
                .preview = "The old server set SO_REUSEADDR=1 properly; the new one calls bind() first and sets it "
                           "afterwards.",
                .claim = "Port reuse must be switched on before bind(); set later, it does not help the bind.",
                .source = kChinesePost,
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "time-wait",
                         "bind() is where the kernel compares the new socket with what already holds the port, and "
                         "at that moment the new socket did not have SO_REUSEADDR yet: the TIME_WAIT socket "
                         "conflicted and bind() failed. The setsockopt() that followed cannot undo an answer "
                         "already given. Compare restart-with-reuseaddr-both: same servers, only the order "
                         "of the two calls differs."},
                        {"EADDRINUSE", "listener", kListenerLeft},
                        {"EADDRINUSE", "",
                         "The bind was refused before the option was set. The socket table above shows what held "
                         "the port."},
                        {"ok", "clean", kNothingHeld},
                        {"ok", "",
                         "bind() succeeded although SO_REUSEADDR was not set yet when it ran. This kernel follows "
                         "other rules than the ones this lesson describes."},
                    },
                .run = setsockopt_after_bind,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
