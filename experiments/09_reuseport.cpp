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
// Usage: 09-reuseport [--port P] [--json] [--no-color] [--step]
#include <grp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <sstream>

#include "portreuse/child.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/scenarios.hpp"
#include "portreuse/traffic.hpp"

namespace {

using namespace portreuse;

constexpr int kClients = 200;
// "nobody" on most Linux systems: a user that owns nothing, least likely to hold our port.
constexpr uid_t kOtherUser = 65534;

const SocketOptions kReusePort{.reuse_port = 1};

Observation restart_with_reuseport_both(StepContext& context) {
  RestartPlan plan;
  plan.old_options = kReusePort;
  plan.new_options = kReusePort;
  plan.stop_signal = SIGINT;
  return restart_server(context, plan);
}

// The realistic order of events: the option is added to the code, the old process (started from
// the code before the change) is stopped, and the new one starts with it.
Observation restart_with_reuseport_new_only(StepContext& context) {
  RestartPlan plan;
  plan.new_options = kReusePort;
  plan.stop_signal = SIGINT;
  return restart_server(context, plan);
}

std::string listener_situation(const Result<std::vector<SocketEntry>>& holders) {
  if (!holders) return classify_holders(holders);
  int listeners = 0;
  for (const auto& entry : *holders) listeners += entry.is(TcpState::listen) ? 1 : 0;
  return listeners >= 2 ? "shared" : classify_holders(holders);
}

// Two listening sockets on one wildcard address, then a burst of clients: who accepts them?
Observation two_listeners_reuseport(StepContext& context) {
  const auto& narrator = context.narrator();
  const auto where = context.wildcard(context.port());
  auto first = attempt_listen(context, "listener 1", where, kReusePort);
  if (first.deciding_outcome())
    return Observation::failed_setup("the first listener could not listen on " + where.text());
  auto second = attempt_listen(context, "listener 2", where, kReusePort);

  Observation observation;
  observation.call = second.deciding_call();
  observation.outcome = second.deciding_outcome();
  observation.situation =
      listener_situation(context.show_sockets(context.port(), "the kernel's sockets for the port:"));
  if (observation.outcome) return observation;

  const auto target = context.loopback(context.port());
  narrator.line("clients", std::to_string(kClients) + " connections to " + target.text() +
                               ", one after another, each from its own port");
  const auto tally = tally_accepts({first.socket.get(), second.socket.get()}, target, kClients);
  if (tally.failure) {
    return Observation::failed_setup("client " + std::to_string(tally.connected + 1) +
                                     " could not connect: " + describe_outcome(tally.failure));
  }
  narrator.line("listener 1", "accepted " + std::to_string(tally.accepted[0]) + " of them");
  narrator.line("listener 2", "accepted " + std::to_string(tally.accepted[1]) + " of them");
  if (tally.total_accepted() < tally.connected) {
    narrator.line("kernel", std::to_string(tally.connected - tally.total_accepted()) +
                                " connections reached neither listener in time");
  }
  narrator.line("clients", "every connection closed with a reset (SO_LINGER {1, 0}): no TIME_WAIT left behind");
  observation.facts.emplace_back("connections", std::to_string(tally.connected));
  observation.facts.emplace_back("accepted_first", std::to_string(tally.accepted[0]));
  observation.facts.emplace_back("accepted_second", std::to_string(tally.accepted[1]));
  return observation;
}

// One "call outcome" line per call the child made, in order.
std::vector<std::pair<std::string, std::string>> parse_reports(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> reports;
  std::istringstream lines(text);
  std::string call;
  std::string outcome;
  while (lines >> call >> outcome) reports.emplace_back(call, outcome);
  return reports;
}

// Root's listener holds 0.0.0.0:P with SO_REUSEPORT; a process of another user tries to join it.
Observation reuseport_other_uid(StepContext& context) {
  if (::geteuid() != 0) return Observation::skip("bind", "needs root to create a socket under another uid");
  const auto& narrator = context.narrator();
  const auto where = context.wildcard(context.port());
  auto first = attempt_listen(context, "root's server", where, kReusePort);
  if (first.deciding_outcome()) return Observation::failed_setup("root's listener could not listen on " + where.text());

  std::array<int, 2> ends{};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends.data()) != 0) {
    return Observation::failed_setup("socketpair: " + describe_outcome(last_error()));
  }
  UniqueFd reports_end(ends[0]);
  UniqueFd child_end(ends[1]);
  narrator.line("you", "start a second server as user " + std::to_string(kOtherUser) + " (" + kReusePort.describe() +
                           ", the same address and port)");
  auto child = ChildProcess::fork_running([&]() {
    reports_end.reset();
    const auto report = [&](std::string_view call, std::error_code outcome) {
      (void)send_all(child_end.get(), std::string(call) + " " + outcome_name(outcome) + "\n");
    };
    // Groups first: after setuid() this process could no longer change them.
    std::error_code dropped;
    if (::setgroups(0, nullptr) != 0 || ::setgid(kOtherUser) != 0 || ::setuid(kOtherUser) != 0) dropped = last_error();
    report("setuid", dropped);
    if (dropped) return 1;
    auto socket = open_socket(AF_INET);
    if (!socket) return report("socket", socket.error()), 1;
    if (auto error = apply_options(socket->get(), kReusePort)) return report("setsockopt", error), 1;
    const auto bound = bind_to(socket->get(), where);
    report("bind", bound);
    if (bound) return 1;
    report("listen", listen_on(socket->get()));
    return 0;
  });
  if (!child) return Observation::failed_setup("fork: " + describe_outcome(child.error()));
  child_end.reset();

  std::string text;
  while (auto chunk = receive_within(reports_end.get())) {
    if (chunk->empty()) break;
    text += *chunk;
  }
  (void)child->wait_for_exit();
  const auto actor = "uid " + std::to_string(kOtherUser) + " pid " + std::to_string(child->pid());
  Observation observation;
  for (const auto& [call, outcome_text] : parse_reports(text)) {
    const auto outcome = parse_outcome(outcome_text).value_or(make_error(EIO));
    if (call == "setuid") {
      narrator.call(actor, "setgroups, setgid, setuid " + std::to_string(kOtherUser), outcome);
      // Without that user (or in a user namespace that does not map it) the step cannot run here.
      if (outcome) {
        return Observation::skip(
            "bind", "could not become user " + std::to_string(kOtherUser) + " (" + describe_outcome(outcome) + ")");
      }
      continue;
    }
    narrator.call(actor, call == "bind" ? "bind " + where.text() + " (" + kReusePort.describe() + ")" : call, outcome);
    observation.call = call;
    observation.outcome = outcome;
  }
  if (observation.call.empty() || observation.call == "socket" || observation.call == "setsockopt") {
    return Observation::failed_setup("the process of user " + std::to_string(kOtherUser) + " did not get to bind()");
  }
  const auto holders = context.show_sockets(context.port(), "the kernel's sockets for the port:");
  observation.situation = listener_situation(holders);
  for (const auto& entry : holders ? *holders : std::vector<SocketEntry>{}) {
    // The owner as the kernel records it, not as this program assumes it.
    if (entry.is(TcpState::listen)) observation.facts.emplace_back("listener_uid", std::to_string(entry.uid));
  }
  observation.facts.emplace_back("other_uid", std::to_string(kOtherUser));
  return observation;
}

const std::string kChinesePost = "\"端口复用 (bind error: Address already in use 问题)\"";

const Experiment kExperiment{
    .number = "09",
    .slug = "reuseport",
    .title = "SO_REUSEPORT: sharing a port on purpose",
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
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "time-wait",
                         "The TIME_WAIT socket came from a connection the old listener accepted, and an accepted "
                         "socket inherits the listener's options, so the TIME_WAIT carries SO_REUSEPORT too. Linux "
                         "lets a socket with SO_REUSEPORT bind over a TIME_WAIT socket that has it as well (for "
                         "TIME_WAIT it does not even compare the owners). So SO_REUSEPORT did SO_REUSEADDR's job "
                         "here, because both the old and the new server set it. The next step drops that condition."},
                        {"ok", "",
                         "The new server bound at once. The socket table above shows what was left of the old one."},
                        {"EADDRINUSE", "time-wait",
                         "The kernel refused the restart although the old and the new socket both set SO_REUSEPORT: "
                         "this kernel does not let SO_REUSEPORT cover a TIME_WAIT socket."},
                        {"EADDRINUSE", "",
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
                .claimed = "ok",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "time-wait",
                         "The TIME_WAIT socket belongs to a connection of the old server, which did not set "
                         "SO_REUSEPORT, so the TIME_WAIT does not carry it either. Linux shares an address through "
                         "SO_REUSEPORT only when every socket on it set the option, TIME_WAIT sockets included. "
                         "Adding the option to the code helps from the next restart on, not for the process that "
                         "was started before the change (socket(7) notes the same both-sides rule for "
                         "SO_REUSEADDR; experiment 05)."},
                        {"EADDRINUSE", "",
                         "The restart was refused; the socket table above shows what still held the port."},
                        {"ok", "time-wait",
                         "The new server bound over a TIME_WAIT that did not carry SO_REUSEPORT: this kernel lets "
                         "the option of the new socket alone decide, as some BSD systems do for SO_REUSEADDR."},
                        {"ok", "",
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
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "shared",
                         "Both sockets set SO_REUSEPORT before bind() and belong to the same user, so the kernel "
                         "grouped them for 0.0.0.0:P. For each new connection it hashes the connection's addresses "
                         "and ports (the 4-tuple) and lets the hash pick one listener of the group: the counts above "
                         "are two random halves, not a strict alternation. The flip side: starting the same server "
                         "twice no longer fails with 'Address already in use'; both copies silently take traffic."},
                        {"ok", "",
                         "The second listener was accepted on the same address and port; the socket table above "
                         "shows what the kernel keeps for it."},
                        {"EADDRINUSE", "",
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
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "listener",
                         "Root's listener and the new socket both set SO_REUSEPORT, but the new socket was created by "
                         "another user. Linux admits a socket into a SO_REUSEPORT group only when its owner (the "
                         "effective uid at socket()) is the owner of the sockets already there. Otherwise any local "
                         "user could start a listener on the port of someone else's server and receive a share of "
                         "its clients, and of what they send: port hijacking."},
                        {"EADDRINUSE", "",
                         "The process of the other user was refused; the socket table above shows what held the port."},
                        {"ok", "",
                         "A process of another user joined root's listening port: this kernel does not apply the "
                         "same-user rule that socket(7) documents for SO_REUSEPORT."},
                    },
                .run = reuseport_other_uid,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
