// 13-client-side: Client ports: TIME_WAIT and running out of ephemeral ports.
//
// Shows: TIME_WAIT belongs to whichever side closes first, and a client that closes first keeps
// its local port in TIME_WAIT. With a tiny ephemeral port range (set only inside a network
// namespace of its own) a client that connects and closes again and again runs out of ports, and
// connect() fails with EADDRNOTAVAIL. With --long: net.ipv4.tcp_tw_reuse = 1 lets a new outgoing
// connection take over a TIME_WAIT port once a second has passed.
//
// Beyond the articles: "端口复用 (bind error: Address already in use 问题)" says the side that
// closes first waits 2MSL; here that side is the client. V. Bernat's "Coping with the TCP
// TIME-WAIT state on busy Linux servers" for tcp_tw_reuse. Lesson: lessons/13-client-side.md
//
// Usage: 13-client-side [--port P] [--json] [--no-color] [--step] [--long]
#include <algorithm>
#include <thread>

#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/netns.hpp"

namespace {

using namespace portreuse;

// Six ports: enough to watch each one go, few enough to run out in milliseconds.
// Even: the kernel walks the range two ports at a time and rounds an odd count down
// (__inet_hash_connect), so an odd-sized range may leave one port unused.
constexpr int kRangeSize = 6;
// More attempts than ports, so a kernel that hands out a port twice is seen doing it.
constexpr int kMaxConnections = kRangeSize + 3;
constexpr Millis kConnectDeadline{1000};

struct ExhaustionPlan {
  std::string tw_reuse;         // net.ipv4.tcp_tw_reuse inside the namespace
  std::string why_tw_reuse;     // said before the run
  bool wait_and_retry = false;  // after running out, wait past the reuse delay and connect once more
};

// How long to wait before a TIME_WAIT port may be reused: tcp_tw_reuse_delay (milliseconds) where
// the kernel has it, plus a margin; older kernels compare whole seconds, so two seconds there.
Millis reuse_wait() {
  if (auto delay = read_sysctl("net.ipv4.tcp_tw_reuse_delay")) {
    try {
      return Millis(std::stol(*delay) + 500);
    } catch (...) {
    }
  }
  return Millis(2000);
}

// Runs inside the namespace: a server, and clients that connect, close first, and connect again.
int exhaust_ephemeral_ports(const NamespaceReporter& reporter, const Endpoint& server, bool wait_and_retry) {
  auto listener = open_socket(AF_INET);
  if (!listener) return reporter.report("listen", listener.error()), 1;
  std::error_code listening = bind_to(listener->get(), server);
  if (!listening) listening = listen_on(listener->get());
  reporter.report("listen", listening, server.text());
  if (listening) return 1;

  // Set when something other than connect() failed: then the run teaches nothing.
  bool broken = false;
  const auto connect_once = [&](std::string_view kind) -> std::error_code {
    auto client = open_socket(AF_INET);
    if (!client) {
      broken = true;
      return reporter.report("socket", client.error()), client.error();
    }
    const auto outcome = connect_within(client->get(), server, kConnectDeadline);
    const auto from = local_endpoint(client->get());
    reporter.report(kind, outcome, from && from->port() != 0 ? from->text() : "");
    if (outcome) return outcome;
    auto accepted = accept_within(listener->get(), kConnectDeadline);
    if (!accepted) {
      broken = true;
      return reporter.report("accept", accepted.error()), accepted.error();
    }
    client->reset();  // the client closes first: its side of the connection keeps the TIME_WAIT
    (void)wait_for_end_of_stream(accepted->fd.get(), kConnectDeadline);
    accepted->fd.reset();
    return {};
  };

  std::error_code failure;
  for (int attempt = 0; attempt < kMaxConnections && !failure; ++attempt) failure = connect_once("connect");

  if (auto table = read_socket_table()) {
    for (const auto& entry : involving_port(*table, server.port())) {
      if (entry.is(TcpState::time_wait)) reporter.report("time-wait", {}, entry.describe());
    }
  }
  if (broken) return 1;
  if (wait_and_retry && failure) {
    const auto wait = reuse_wait();
    reporter.report("wait", {}, std::to_string(wait.count()));
    std::this_thread::sleep_for(wait);
    (void)connect_once("connect-again");
  }
  return broken ? 1 : 0;
}

// A port range of kRangeSize ports that does not contain the server's port.
std::string port_range_avoiding(std::uint16_t server_port) {
  const int start = (server_port >= 40000 && server_port < 40000 + kRangeSize) ? 50000 : 40000;
  return std::to_string(start) + " " + std::to_string(start + kRangeSize - 1);
}

std::string port_of(const std::string& endpoint_text) {
  return endpoint_text.substr(endpoint_text.rfind(':') + 1);
}

Observation run_exhaustion(StepContext& context, const ExhaustionPlan& plan) {
  const auto& narrator = context.narrator();
  const auto server = context.loopback(context.port());
  const auto range = port_range_avoiding(server.port());
  const auto host_tw_reuse = read_sysctl("net.ipv4.tcp_tw_reuse");

  NamespacePlan namespace_plan;
  namespace_plan.sysctls = {{"net.ipv4.ip_local_port_range", range}, {"net.ipv4.tcp_tw_reuse", plan.tw_reuse}};
  namespace_plan.deadline = plan.wait_and_retry ? Millis(8000) : Millis(5000);
  narrator.line("you", "run server and clients in a network namespace of their own");
  narrator.line("you", "(the host's settings stay as they are: its tcp_tw_reuse is " +
                           (host_tw_reuse ? *host_tw_reuse : std::string("unknown")) + ")");
  narrator.line("you", plan.why_tw_reuse);

  int connected = 0;
  std::optional<std::error_code> failure;
  std::optional<std::error_code> after_wait;
  std::string reused_from;
  std::vector<std::string> time_wait_rows;
  long long waited_ms = 0;
  const auto on_event = [&](const NamespaceEvent& event) {
    const auto outcome = event.ok() ? std::error_code{} : parse_outcome(event.outcome).value_or(make_error(EIO));
    if (event.setup) {
      narrator.call("namespace", event.kind + " " + event.detail, outcome);
    } else if (event.kind == "listen") {
      narrator.call("server", "listen on " + event.detail, outcome);
    } else if (event.kind == "connect" || event.kind == "connect-again") {
      narrator.call("client", "connect " + server.text() + (event.detail.empty() ? "" : " from " + event.detail),
                    outcome);
      if (event.kind == "connect" && event.ok() && ++connected == 1) {
        narrator.line("client", "closes first, then connects again with a new socket, until connect() fails:");
      }
      if (event.kind == "connect" && !event.ok() && !failure) failure = outcome;
      if (event.kind == "connect-again") {
        after_wait = outcome;
        reused_from = event.detail;
      }
    } else if (event.kind == "accept" || event.kind == "socket") {
      narrator.call(event.kind == "accept" ? "server" : "client", event.kind, outcome);
    } else if (event.kind == "time-wait") {
      time_wait_rows.push_back(event.detail);
    } else if (event.kind == "wait") {
      waited_ms = std::stoll(event.detail);
      narrator.table("kernel", "the namespace's TIME_WAIT sockets:", time_wait_rows);
      narrator.line("client", "waits " + std::to_string(waited_ms) + " ms (past tcp_tw_reuse_delay), connects again:");
    }
  };
  auto run = run_in_network_namespace(
      namespace_plan,
      [&](const NamespaceReporter& reporter) { return exhaust_ephemeral_ports(reporter, server, plan.wait_and_retry); },
      on_event);
  if (!run) return Observation::failed_setup("fork: " + describe_outcome(run.error()));
  if (run->unavailable) return Observation::skip("connect", "no network namespace here: " + *run->unavailable);
  if (run->timed_out) return Observation::failed_setup("the clients in the namespace did not finish in time");
  if (!run->status || !run->status->exited || run->status->code != 0) {
    return Observation::failed_setup("the scenario in the namespace broke off (" +
                                     (run->status ? run->status->describe() : std::string("no exit status")) +
                                     "); its calls are shown above");
  }
  if (!plan.wait_and_retry) narrator.table("kernel", "the namespace's TIME_WAIT sockets:", time_wait_rows);

  Observation observation;
  observation.call = "connect";
  observation.facts.emplace_back("local_port_range", json_quote(range));
  observation.facts.emplace_back("range_size", std::to_string(kRangeSize));
  observation.facts.emplace_back("tcp_tw_reuse", json_quote(plan.tw_reuse));
  observation.facts.emplace_back("connections_before_failure", std::to_string(connected));
  observation.facts.emplace_back("time_wait_sockets", std::to_string(time_wait_rows.size()));
  if (!plan.wait_and_retry) {
    observation.outcome = failure.value_or(std::error_code{});
    if (failure && static_cast<int>(time_wait_rows.size()) == connected) observation.situation = "all-in-time-wait";
    return observation;
  }
  observation.facts.emplace_back("first_failure", json_quote(failure ? outcome_name(*failure) : "none"));
  observation.facts.emplace_back("waited_ms", std::to_string(waited_ms));
  if (!failure) {
    observation.situation = "never-exhausted";
    return observation;
  }
  if (!after_wait) return Observation::failed_setup("the namespace reported no connect() after the wait");
  observation.outcome = *after_wait;
  if (!*after_wait) {
    const bool was_time_wait = std::any_of(time_wait_rows.begin(), time_wait_rows.end(), [&](const std::string& row) {
      return row.find(" " + reused_from + " ") != std::string::npos;
    });
    observation.situation = was_time_wait ? "reused-time-wait-port" : "new-port";
    observation.facts.emplace_back("reused_port", port_of(reused_from));
  }
  return observation;
}

Observation ephemeral_exhausted_connect(StepContext& context) {
  return run_exhaustion(
      context,
      ExhaustionPlan{
          .tw_reuse = "0",
          .why_tw_reuse = "tcp_tw_reuse = 0 inside: the default 2 lets loopback reuse TIME_WAIT ports after 1 s",
      });
}

Observation ephemeral_exhausted_tw_reuse(StepContext& context) {
  return run_exhaustion(
      context,
      ExhaustionPlan{
          .tw_reuse = "1",
          .why_tw_reuse = "tcp_tw_reuse = 1 inside: outgoing connections may reuse TIME_WAIT ports once it is safe",
          .wait_and_retry = true,
      });
}

const Experiment kExperiment{
    .number = "13",
    .slug = "client-side",
    .title = "Client ports: TIME_WAIT and running out of ephemeral ports",
    .summary =
        "TIME_WAIT stays with whoever closes first. When that is the client, it is the client's own port that "
        "waits, and a client that opens and closes many connections to one server can run out of ports. "
        "The steps run in a private network namespace with a range of six ports, so the host is not touched.",
    .steps =
        {
            Step{
                .id = "ephemeral-exhausted-connect",
                .preview = "In a private namespace with " + std::to_string(kRangeSize) +
                           " ephemeral ports and tcp_tw_reuse = 0, clients connect to a "
                           "local server and close first, until connect() fails.",
                .claim = "The side that closes first waits in TIME_WAIT (2MSL). When that side is a client, its "
                         "local port waits too, so a client that keeps reconnecting runs out of ports and connect() "
                         "fails.",
                .source = "\"端口复用 (bind error: Address already in use 问题)\"; V. Bernat, \"Coping with the TCP "
                          "TIME-WAIT state on busy Linux servers\"",
                .claimed = "EADDRNOTAVAIL",
                .expected_linux = "EADDRNOTAVAIL",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRNOTAVAIL", "all-in-time-wait",
                         "A TCP connection is named by four things: client address and port, server address and "
                         "port. Here three of them never change, so every connection needs a new client port from "
                         "net.ipv4.ip_local_port_range. Each client closed first, which left its port in TIME_WAIT "
                         "with this very server as the peer, and with tcp_tw_reuse = 0 the kernel will not give such "
                         "a port out again for the same destination until the TIME_WAIT is over. Once all of them "
                         "wait, connect() has no local address to use and fails with EADDRNOTAVAIL ('Cannot assign "
                         "requested address'): not EADDRINUSE, and no bind() is involved. The host's default range "
                         "has 28,232 ports, so the same wall stands at about 470 new connections per second to one "
                         "server address and port."},
                        {"EADDRNOTAVAIL", "",
                         "connect() found no free local port for this destination and failed with EADDRNOTAVAIL. "
                         "The TIME_WAIT sockets above are what held the ports."},
                        {"ok", "",
                         "Every connect() succeeded although there were more connections than ports: this kernel "
                         "reused ports that were still in TIME_WAIT, which Linux does only when tcp_tw_reuse "
                         "allows it."},
                    },
                .run = ephemeral_exhausted_connect,
            },
            Step{
                .id = "ephemeral-exhausted-tw-reuse",
                .preview = "The same with tcp_tw_reuse = 1: run out of ports, wait a little over a second, connect "
                           "again.",
                .claim = "With net.ipv4.tcp_tw_reuse = 1, a new outgoing connection may take over a port still in "
                         "TIME_WAIT once that is safe (its TCP timestamps are newer), so the client recovers without "
                         "waiting out the TIME_WAIT.",
                .source = "V. Bernat, \"Coping with the TCP TIME-WAIT state on busy Linux servers\"; tcp(7)",
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "reused-time-wait-port",
                         "Right after the ports ran out, connect() still failed: reuse is not allowed at once. After "
                         "the wait the same connect() succeeded on a port whose TIME_WAIT was still running. With "
                         "tcp_tw_reuse the kernel may recycle a TIME_WAIT for a new outgoing connection to the same "
                         "peer once the TCP timestamp clock has moved on (tcp_tw_reuse_delay, 1 s by default): the "
                         "timestamps let the peer tell the new connection's segments from the old one's. It only "
                         "helps the side that connects; a server's TIME_WAIT and its bind() are not affected, so "
                         "this is no cure for the articles' restart problem."},
                        {"ok", "new-port",
                         "After the wait connect() succeeded on a port that was not among the TIME_WAIT sockets: a "
                         "port became free some other way."},
                        {"ok", "never-exhausted",
                         "The ports never ran out: with tcp_tw_reuse = 1 this kernel reused TIME_WAIT ports at once, "
                         "without the delay this lesson expects."},
                        {"EADDRNOTAVAIL", "",
                         "Even after the wait no port could be reused. Reuse needs TCP timestamps on the old "
                         "connection (net.ipv4.tcp_timestamps) and a clock that has moved on; check both."},
                    },
                .run = ephemeral_exhausted_tw_reuse,
                .long_running = true,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
