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
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::Millis;

// Six ports: enough to watch each one go, few enough to run out in milliseconds.
// Even: the kernel walks the range two ports at a time and rounds an odd count down
// (__inet_hash_connect), so an odd-sized range may leave one port unused.
constexpr int kRangeSize = 6;
// More attempts than ports, so a kernel that hands out a port twice is seen doing it.
constexpr int kMaxConnections = kRangeSize + 3;

// A range of kRangeSize ports that does not contain the server's port.
std::string port_range_avoiding(std::uint16_t server_port) {
  const int start = (server_port >= 40000 && server_port < 40000 + kRangeSize) ? 50000 : 40000;
  return std::to_string(start) + " " + std::to_string(start + kRangeSize - 1);
}

// How long to wait before a TIME_WAIT port may be reused: tcp_tw_reuse_delay (milliseconds) where
// the kernel has it, plus a margin; older kernels compare whole seconds, so two seconds there.
Millis reuse_wait() {
  const auto delay = sysctl_value("net.ipv4.tcp_tw_reuse_delay");
  if (delay && !delay->empty() && delay->find_first_not_of("0123456789") == std::string::npos) {
    return Millis(std::stol(*delay) + 500);
  }
  return Millis(2000);
}

// The port a client's connect() left from, from the event's "127.0.0.1:P from 127.0.0.1:L".
std::optional<std::uint16_t> from_port(const Event& connect) {
  const auto from = connect.detail.rfind(" from ");
  if (from == std::string::npos) return std::nullopt;
  const auto endpoint = Endpoint::parse_with_port(connect.detail.substr(from + 6));
  return endpoint ? std::optional(endpoint->port()) : std::nullopt;
}

Observation run_exhaustion(Lab& lab, const std::string& tw_reuse, bool wait_and_retry) {
  const auto to = lab.loopback();  // the server inside the namespace: 127.0.0.1:P
  const auto range = port_range_avoiding(to.port());
  lab.you("run a server and its clients in a network namespace of their own");
  lab.you("(the host keeps its settings: its tcp_tw_reuse is " +
          sysctl_value("net.ipv4.tcp_tw_reuse").value_or("unknown") + ")");
  lab.you(wait_and_retry ? "tcp_tw_reuse = 1 inside: outgoing connections may take over TIME_WAIT "
                           "ports once it is safe"
                         : "tcp_tw_reuse = 0 inside: the default 2 would let loopback reuse "
                           "TIME_WAIT ports after 1 s");

  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    enter_private_network(t, {{"net.ipv4.ip_local_port_range", range}, {"net.ipv4.tcp_tw_reuse", tw_reuse}});

    auto server = t.alongside("server", Role::server);
    const int listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    server.must("bind", ::bind(listener, to.raw(), to.raw_length()), to);
    server.must("listen", ::listen(listener, kMaxConnections));
    server.quiet();  // the loop below narrates its connects; the rest is evidence
    auto client = t.alongside("client", Role::client);
    auto quiet_client = t.alongside("client", Role::client);
    quiet_client.quiet();

    // One connection: the client connects from a port the kernel picks, closes first (its port
    // keeps the TIME_WAIT), the server reads the end of stream and closes too. 0 or connect's errno.
    const auto connect_once = [&]() -> int {
      const int fd = quiet_client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
      const Returned connected = ::connect(fd, to.raw(), to.raw_length());
      const auto local = portreuse::local_endpoint(fd);
      const bool has_port = connected.value == 0 && local && local->port() != 0;
      client.call("connect", connected, to.text() + (has_port ? " from " + local->text() : ""));
      if (connected.value < 0) {
        quiet_client.must("close", ::close(fd));
        return connected.error;
      }
      const int accepted = server.must("accept", ::accept(listener, nullptr, nullptr));
      quiet_client.must("close", ::close(fd));  // the client closes first
      server.receive_text(accepted);            // 0 bytes: the client's FIN came first
      server.must("close", ::close(accepted));
      return 0;
    };

    t.note("clients connect, close first, and connect again until connect() fails:");
    int failed = 0;
    for (int attempt = 0; attempt < kMaxConnections && failed == 0; ++attempt) failed = connect_once();
    t.note("the namespace's sockets on port " + std::to_string(to.port()) + ":");
    t.report_sockets(to.port());
    if (wait_and_retry && failed != 0) {
      const auto wait = reuse_wait();
      t.note("waits " + std::to_string(wait.count()) + " ms (past tcp_tw_reuse_delay), connects again:");
      std::this_thread::sleep_for(wait);
      connect_once();
    }
  });

  // Not allowed to make namespaces here: a matter of privileges or of the system's settings.
  const auto unshared = inside.wait_for("unshare");
  if (unshared && !unshared->ok()) {
    const int error = unshared->error;
    inside.reap();
    const bool not_permitted =
        error == EPERM || error == EACCES || error == ENOSPC || error == EUSERS || error == EINVAL || error == ENOSYS;
    if (not_permitted) {
      return lab.skip("connect", "unshare(CLONE_NEWUSER | CLONE_NEWNET) returned " +
                                     portreuse::describe_outcome(portreuse::make_error(error)) + ": this user (uid " +
                                     std::to_string(::getuid()) +
                                     ") may not create namespaces here, a matter of the user's "
                                     "privileges or the system's settings (/proc/sys/user/"
                                     "max_user_namespaces, a container's seccomp profile); run it "
                                     "with sudo to see the step");
    }
  }
  inside.reap(Millis(10000));

  // What the namespace reported: the connects, in order, and the TIME_WAIT rows.
  int connected = 0;
  std::optional<Event> failure;
  std::optional<Event> after_wait;
  std::vector<Event> time_waits;
  for (const auto& event : lab.events()) {
    if (event.call == Call::connect && event.role == Role::client) {
      if (failure) {
        after_wait = event;
      } else if (event.ok()) {
        ++connected;
      } else {
        failure = event;
      }
    }
    if (event.call == Call::socket_table && event.value == static_cast<long>(portreuse::TcpState::time_wait)) {
      time_waits.push_back(event);
    }
  }

  // A verdict needs connections that were made and accepted, closed by the client first, and
  // the namespace's socket table read.
  const auto needs = {Evidence::accepted, Evidence::client_closed_first, Evidence::table_read};
  std::optional<Event> last_connect;
  if (const auto* last = lab.last(Call::connect, Role::client)) last_connect = *last;
  Observation observation;
  if (!wait_and_retry) {
    // "All in TIME_WAIT" needs connections that were made, and as many TIME_WAIT rows as them.
    const bool all_waiting = failure && connected > 0 && static_cast<int>(time_waits.size()) == connected;
    observation = lab.observe(failure ? failure : last_connect, needs,
                              all_waiting ? Situation::all_in_time_wait : Situation::any);
  } else if (!failure) {
    observation = lab.observe(last_connect, needs, Situation::never_exhausted);
  } else {
    auto situation = Situation::any;
    if (after_wait && after_wait->ok()) {
      const auto port = from_port(*after_wait);
      bool was_time_wait = false;
      for (const auto& row : time_waits) {
        const auto local = " " + lab.address("127.0.0.1").with_port(port.value_or(0)).text() + " ";
        was_time_wait = was_time_wait || (port && row.detail.find(local) != std::string::npos);
      }
      situation = was_time_wait ? Situation::reused_time_wait_port : Situation::new_port;
      if (port) observation.fact("reused_port", std::to_string(*port));
    }
    auto observed = lab.observe(after_wait, needs, situation);
    for (auto& fact : observation.facts) observed.facts.push_back(fact);
    observation = observed;
    observation.fact_text("first_failure", portreuse::outcome_name(portreuse::make_error(failure->error)));
  }
  // The call that broke the scenario is the first failure other than the connect() the step is
  // about (which fails by design once the ports run out).
  if (observation.could_not_run) {
    for (const auto& event : lab.events()) {
      const bool expected = event.call == Call::connect && event.role == Role::client;
      if (event.ok() || expected || event.call == Call::note || event.call == Call::exited) continue;
      auto facts = std::move(observation.facts);
      observation = lab.could_not_run("the scenario did not happen", event);
      observation.facts = std::move(facts);
      break;
    }
  }
  observation.fact_text("local_port_range", range);
  observation.fact("range_size", std::to_string(kRangeSize));
  observation.fact_text("tcp_tw_reuse", tw_reuse);
  observation.fact("connections_before_failure", std::to_string(connected));
  observation.fact("time_wait_sockets", std::to_string(time_waits.size()));
  return observation;
}

Observation ephemeral_exhausted_connect(Lab& lab) {
  return run_exhaustion(lab, "0", false);
}

Observation ephemeral_exhausted_tw_reuse(Lab& lab) {
  return run_exhaustion(lab, "1", true);
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
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
                .claimed = EADDRNOTAVAIL,
                .explanations =
                    {
                        {EADDRNOTAVAIL, Situation::all_in_time_wait,
                         "A TCP connection is named by four things: client address and port, server address and "
                         "port. Here three of them never change, so every connection needs a new client port from "
                         "net.ipv4.ip_local_port_range. Each client closed first, which left its port in TIME_WAIT "
                         "with this very server as the peer, and with tcp_tw_reuse = 0 the kernel will not give such "
                         "a port out again for the same destination until the TIME_WAIT is over. Once all of them "
                         "wait, connect() has no local address to use and fails with EADDRNOTAVAIL ('Cannot assign "
                         "requested address'): not EADDRINUSE, and no bind() is involved. The host's default range "
                         "has 28,232 ports, so the same wall stands at about 470 new connections per second to one "
                         "server address and port."},
                        {EADDRNOTAVAIL, Situation::any,
                         "connect() found no free local port for this destination and failed with EADDRNOTAVAIL. "
                         "The namespace's socket table above shows what held the ports."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::reused_time_wait_port,
                         "Right after the ports ran out, connect() still failed: reuse is not allowed at once. After "
                         "the wait the same connect() succeeded on a port whose TIME_WAIT was still running. With "
                         "tcp_tw_reuse the kernel may recycle a TIME_WAIT for a new outgoing connection to the same "
                         "peer once the TCP timestamp clock has moved on (tcp_tw_reuse_delay, 1 s by default): the "
                         "timestamps let the peer tell the new connection's segments from the old one's. It only "
                         "helps the side that connects; a server's TIME_WAIT and its bind() are not affected, so "
                         "this is no cure for the articles' restart problem."},
                        {kOk, Situation::new_port,
                         "After the wait connect() succeeded on a port that was not among the TIME_WAIT sockets: a "
                         "port became free some other way."},
                        {kOk, Situation::never_exhausted,
                         "The ports never ran out: with tcp_tw_reuse = 1 this kernel reused TIME_WAIT ports at once, "
                         "without the delay this lesson expects."},
                        {EADDRNOTAVAIL, Situation::any,
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
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
