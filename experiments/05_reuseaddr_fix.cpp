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
// Usage: build/default/bin/05-reuseaddr-fix [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <optional>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

// Every step starts the same way: the old server sets SO_REUSEADDR to `old_reuse` before bind()
// (nullopt: it never heard of the option), answers one client, closes first, and gets Ctrl+C.
// Returns what the kernel still holds for the port afterwards.
Situation leave_a_time_wait(Lab& lab, std::optional<int> old_reuse) {
  const auto address = lab.wildcard();
  const auto port = std::to_string(lab.port());

  lab.you(old_reuse ? "start the server (SO_REUSEADDR=" + std::to_string(*old_reuse) + " before bind)"
                    : std::string("start the server (no socket options)"));
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (old_reuse) {
      const int value = *old_reuse;
      t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &value, sizeof value),
             "SO_REUSEADDR=" + std::to_string(value));
    }
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must_receive_text(connection);  // the client's hello: no answer without it
    t.send_text(connection, "message received");
    t.must("close", ::close(connection));  // the server closes first: the TIME_WAIT will be its own
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
  lab.show_sockets("the kernel's sockets for the port now:");
  lab.pause("listener and TIME_WAIT: ss -tano sport = :" + port);

  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("the server is gone: ss -tano state time-wait sport = :" + port);
  return left_behind;
}

// The restarted server with the fix as the articles give it: SO_REUSEADDR before bind().
Process start_again(Lab& lab, int reuse) {
  const auto address = lab.wildcard();
  const auto option = "SO_REUSEADDR=" + std::to_string(reuse);
  lab.you("start the server again: a new process, " + option + " before bind()");
  return lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse), option);
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
}

// The restart's bind() answers each step, once the old server's TIME_WAIT was really there.
Observation answer(Lab& lab, const std::optional<Event>& bound, Situation left_behind) {
  auto observation = lab.observe(bound,
                                 {Evidence::accepted, Evidence::exchanged, Evidence::server_closed_first,
                                  Evidence::server_stopped, Evidence::time_wait_seen},
                                 left_behind);
  lab.report_time_waits(observation);
  return observation;
}

Observation restart_with_reuseaddr_both(Lab& lab) {
  const auto left_behind = leave_a_time_wait(lab, 1);
  auto restarted = start_again(lab, 1);
  return answer(lab, restarted.wait_for("bind"), left_behind);
}

Observation restart_with_reuseaddr_new_only(Lab& lab) {
  const auto left_behind = leave_a_time_wait(lab, std::nullopt);
  auto restarted = start_again(lab, 1);
  return answer(lab, restarted.wait_for("bind"), left_behind);
}

Observation restart_with_reuseaddr_zero(Lab& lab) {
  const auto left_behind = leave_a_time_wait(lab, 0);
  auto restarted = start_again(lab, 0);
  return answer(lab, restarted.wait_for("bind"), left_behind);
}

// The old server did it right; the new one calls bind() first and sets the option afterwards, so
// the order of the two calls is the only difference from restart-with-reuseaddr-both.
Observation setsockopt_after_bind(Lab& lab) {
  const auto left_behind = leave_a_time_wait(lab, 1);
  const auto address = lab.wildcard();
  lab.you("start the server again: bind() first, SO_REUSEADDR=1 after it");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    const int on = 1;
    t.call("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    t.note("that option came too late: bind() had already answered");
  });
  const auto bound = restarted.wait_for("bind");
  restarted.must_reach("setsockopt");  // the late option is part of the scenario: seen, after bind
  restarted.reap();                    // and what the server said about it
  return answer(lab, bound, left_behind);
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

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
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::time_wait,
                         "The old connection's TIME_WAIT socket was still bound to the port, but it came from a "
                         "listener with SO_REUSEADDR=1 and kept that setting. The new socket had the option too, "
                         "and a TIME_WAIT socket is not listening: Linux lets the two share the port, and TIME_WAIT "
                         "goes on protecting the old connection's four-tuple."},
                        {kOk, Situation::clean, kNothingHeld},
                        {kOk, Situation::any,
                         "The restart bound the port at once; the socket table above shows what was left."},
                        {EADDRINUSE, Situation::listener, kListenerLeft},
                        {EADDRINUSE, Situation::any,
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
                .claimed = kOk,
                .elsewhere =
                    "Documented, not observed here: on the BSDs the flag of the socket being bound decides. The "
                    "Stack Overflow answer \"How do SO_REUSEADDR and SO_REUSEPORT differ?\" describes a TIME_WAIT "
                    "socket as simply ignored when the new socket has SO_REUSEADDR, and FreeBSD's in_pcbbind_setup() "
                    "then looks only for an exact address match, so this restart would bind there.",
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait,
                         "The new socket had SO_REUSEADDR=1, but the TIME_WAIT socket on the port did not: it was "
                         "the old server's connection, accepted by a listener without the option, and a TIME_WAIT "
                         "socket keeps the setting its socket had. Linux lets two sockets share a port only when "
                         "both have SO_REUSEADDR, so the old server's setting still counts after it is gone. This "
                         "restart has to wait for TIME_WAIT to end (the timer in the table above); later restarts, "
                         "with both servers setting the option, work at once (restart-with-reuseaddr-both)."},
                        {EADDRINUSE, Situation::listener, kListenerLeft},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {kOk, Situation::time_wait,
                         "The new server bound the port although the TIME_WAIT socket came from a server without "
                         "SO_REUSEADDR: on this kernel the new socket's flag alone was enough, as on the BSDs."},
                        {kOk, Situation::clean, kNothingHeld},
                        {kOk, Situation::any,
                         "The restart bound the port at once; the socket table above shows what was left."},
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
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait,
                         "Setting SO_REUSEADDR to 0 is the same as never setting it (0 is the default): neither "
                         "the new socket nor the TIME_WAIT socket allowed sharing, so the port stays blocked until "
                         "TIME_WAIT ends."},
                        {EADDRINUSE, Situation::listener, kListenerLeft},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {kOk, Situation::clean, kNothingHeld},
                        {kOk, Situation::any,
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
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait,
                         "bind() is where the kernel compares the new socket with what already holds the port, and "
                         "at that moment the new socket did not have SO_REUSEADDR yet: the TIME_WAIT socket "
                         "conflicted and bind() failed. The setsockopt() that followed cannot undo an answer "
                         "already given. Compare restart-with-reuseaddr-both: same servers, only the order "
                         "of the two calls differs."},
                        {EADDRINUSE, Situation::listener, kListenerLeft},
                        {EADDRINUSE, Situation::any,
                         "The bind was refused before the option was set. The socket table above shows what held "
                         "the port."},
                        {kOk, Situation::clean, kNothingHeld},
                        {kOk, Situation::any,
                         "bind() succeeded although SO_REUSEADDR was not set yet when it ran. This kernel follows "
                         "other rules than the ones this lesson describes."},
                    },
                .run = setsockopt_after_bind,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
