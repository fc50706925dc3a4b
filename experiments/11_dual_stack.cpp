// 11-dual-stack: IPv6 dual stack and IPv4 on one port.
//
// Shows: a socket on [::]:P with IPV6_V6ONLY=0 also takes IPv4 connections, so it holds 0.0.0.0:P
// as well and an IPv4 wildcard bind to P fails, in either order; with IPV6_V6ONLY=1 the two
// families are separate and both servers bind. The system default comes from
// net.ipv6.bindv6only, read and shown by every step.
//
// Beyond the articles (they only use IPv4): ipv6(7), IPV6_V6ONLY. Lesson: lessons/11-dual-stack.md
//
// Usage: 11-dual-stack [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>

#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/netns.hpp"
#include "portreuse/scenarios.hpp"
#include "portreuse/traffic.hpp"

namespace {

using namespace portreuse;

std::optional<int> v6only_of(int fd) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &value, &length) != 0) return std::nullopt;
  return value;
}

struct Listener {
  std::string name;
  int fd = -1;
};

// Where one IPv4 client to 127.0.0.1:P ends up: refused, or accepted by one of the listeners.
struct Landing {
  std::string text;         // for narration and JSON
  std::string listener;     // the name of the listener that accepted it; empty if none
  std::error_code failure;  // connect()'s error, if it failed
};

Landing land_ipv4_client(const StepContext& context, const std::vector<Listener>& listeners) {
  std::vector<int> fds;
  for (const auto& listener : listeners) fds.push_back(listener.fd);
  const auto target = context.loopback(context.port());
  const auto tally = tally_accepts(fds, target, 1, Millis(1000));
  Landing landing;
  landing.failure = tally.failure;
  if (tally.failure) {
    landing.text = "connect() fails with " + outcome_name(tally.failure);
  } else {
    for (std::size_t index = 0; index < listeners.size(); ++index) {
      if (tally.accepted[index] == 0 || !tally.first_peer[index]) continue;
      landing.listener = listeners[index].name;
      landing.text =
          "accepted by the " + listeners[index].name + ", which sees the client as " + tally.first_peer[index]->text();
    }
    if (landing.listener.empty()) landing.text = "connected, but no listener accepted it in time";
  }
  context.narrator().line("client", "an IPv4 client connects to " + target.text() + ": " + landing.text);
  return landing;
}

// The IPv6 socket's IPV6_V6ONLY as read back, confirmed where possible by where an IPv4 client went.
std::string situation_of(std::optional<int> v6only, const std::optional<Landing>& probe, const std::string& ipv6_name) {
  if (!v6only) return "";
  if (probe) {
    if (*v6only == 0 && probe->listener == ipv6_name) return "dual-stack";
    if (*v6only == 1 && probe->failure.value() == ECONNREFUSED) return "v6-only";
    return "v6only-" + std::to_string(*v6only);
  }
  return *v6only == 0 ? "dual-stack" : "v6-only";
}

// Binds and listens the first socket, then tries the second on the same port. The IPv6 socket is
// [::]:P with IPV6_V6ONLY set to `v6only`; the IPv4 socket is 0.0.0.0:P.
Observation one_port_two_families(StepContext& context, bool ipv6_first, int v6only) {
  const auto& narrator = context.narrator();
  const auto bindv6only = read_sysctl("net.ipv6.bindv6only");
  narrator.line("kernel", bindv6only ? "net.ipv6.bindv6only = " + *bindv6only +
                                           ": the IPV6_V6ONLY a new IPv6 socket starts with (this step sets it)"
                                     : std::string("net.ipv6.bindv6only cannot be read"));
  const std::pair<std::string, std::string> bindv6only_fact{"bindv6only",
                                                            bindv6only ? *bindv6only : std::string("null")};
  if (auto missing = ipv6_unavailable()) {
    auto skipped = Observation::skip("bind", *missing);
    skipped.facts.push_back(bindv6only_fact);
    return skipped;
  }

  const auto port = context.port();
  const std::string ipv6_name = "IPv6 server";
  const std::string ipv4_name = "IPv4 server";
  const auto ipv6_address = *Endpoint::parse("::", port);
  const SocketOptions ipv6_options{.ipv6_only = v6only};
  const auto ipv4_address = context.wildcard(port);
  const SocketOptions ipv4_options{};

  auto first = ipv6_first ? attempt_listen(context, ipv6_name, ipv6_address, ipv6_options)
                          : attempt_listen(context, ipv4_name, ipv4_address, ipv4_options);
  if (first.deciding_outcome()) {
    return Observation::failed_setup("the first server could not listen: " +
                                     describe_outcome(first.deciding_outcome()));
  }
  const std::string first_name = ipv6_first ? ipv6_name : ipv4_name;
  const std::string second_name = ipv6_first ? ipv4_name : ipv6_name;
  std::optional<Landing> before;
  if (ipv6_first) before = land_ipv4_client(context, {{first_name, first.socket.get()}});

  auto second = ipv6_first ? attempt_listen(context, ipv4_name, ipv4_address, ipv4_options)
                           : attempt_listen(context, ipv6_name, ipv6_address, ipv6_options);
  Observation observation;
  observation.call = second.deciding_call();
  observation.outcome = second.deciding_outcome();
  const auto holders = context.show_sockets(port, "the kernel's sockets for the port:");
  std::optional<Landing> after;
  if (!observation.outcome) {
    after = land_ipv4_client(context, {{first_name, first.socket.get()}, {second_name, second.socket.get()}});
  }

  const auto v6only_read_back = v6only_of(ipv6_first ? first.socket.get() : second.socket.get());
  observation.situation = situation_of(v6only_read_back, before, ipv6_name);
  observation.facts.push_back(bindv6only_fact);
  observation.facts.emplace_back("ipv6_v6only", v6only_read_back ? std::to_string(*v6only_read_back) : "null");
  if (before) observation.facts.emplace_back("ipv4_client_before_second", json_quote(before->text));
  if (after) observation.facts.emplace_back("ipv4_client_after_second", json_quote(after->text));
  observation.facts.emplace_back("sockets", holders ? sockets_json(*holders) : "null");
  return observation;
}

Observation dual_stack_v6only_0_then_v4(StepContext& context) {
  return one_port_two_families(context, true, 0);
}

Observation dual_stack_v6only_1_then_v4(StepContext& context) {
  return one_port_two_families(context, true, 1);
}

Observation v4_then_dual_stack(StepContext& context) {
  return one_port_two_families(context, false, 0);
}

const std::string kIpv6Manual = "ipv6(7), IPV6_V6ONLY";

const Experiment kExperiment{
    .number = "11",
    .slug = "dual-stack",
    .title = "IPv6 dual stack and IPv4 on one port",
    .summary =
        "A server on [::] may also serve IPv4: then it holds the IPv4 port too, and an IPv4 server on the "
        "same port is refused, whichever starts first. IPV6_V6ONLY decides; net.ipv6.bindv6only is its "
        "default.",
    .steps =
        {
            Step{
                .id = "dual-stack-v6only-0-then-v4",
                .preview = "An IPv6 server listens on [::]:P with IPV6_V6ONLY=0; an IPv4 server then binds 0.0.0.0:P.",
                .claim = "An IPv6 socket on :: with IPV6_V6ONLY off also receives IPv4 (as IPv4-mapped addresses), "
                         "so it occupies the IPv4 port as well: binding 0.0.0.0 to that port fails.",
                .source = kIpv6Manual,
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "dual-stack",
                         "The IPv6 socket read back IPV6_V6ONLY=0 and the IPv4 client above was accepted by it, its "
                         "address shown in IPv4-mapped form (::ffff:127.0.0.1): one socket serves both families. "
                         "For bind() the kernel therefore treats [::]:P as covering 0.0.0.0:P too, and a second "
                         "IPv4 wildcard on the port overlaps with it just as a second 0.0.0.0:P would."},
                        {"EADDRINUSE", "",
                         "The IPv4 bind was refused; the socket table above shows what held the port."},
                        {"ok", "",
                         "The IPv4 server bound next to a dual-stack IPv6 socket: this kernel keeps the two "
                         "families apart in bind() even with IPV6_V6ONLY off."},
                    },
                .run = dual_stack_v6only_0_then_v4,
            },
            Step{
                .id = "dual-stack-v6only-1-then-v4",
                .preview = "An IPv6 server listens on [::]:P with IPV6_V6ONLY=1; an IPv4 server then binds 0.0.0.0:P.",
                .claim = "With IPV6_V6ONLY on, the IPv6 socket is limited to IPv6, so an IPv4 server can bind the "
                         "same port number.",
                .source = kIpv6Manual,
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "v6-only",
                         "The IPv6 socket read back IPV6_V6ONLY=1, and an IPv4 client to the port was refused "
                         "while it was alone: it does not serve IPv4 at all. The IPv4 port number was therefore "
                         "free, and the IPv4 server got it; the last client line above shows which server an IPv4 "
                         "client reaches now. This is how servers that want separate IPv4 and IPv6 "
                         "sockets on one port are set up."},
                        {"ok", "",
                         "Both servers hold the port, one per family; the client lines above show who takes IPv4."},
                        {"EADDRINUSE", "",
                         "The IPv4 bind was refused although the IPv6 socket was set to IPv6 only: on this kernel "
                         "IPV6_V6ONLY does not free the IPv4 port."},
                    },
                .run = dual_stack_v6only_1_then_v4,
            },
            Step{
                .id = "v4-then-dual-stack",
                .preview = "An IPv4 server listens on 0.0.0.0:P; an IPv6 server then binds [::]:P with IPV6_V6ONLY=0.",
                .claim = "The conflict works both ways: a dual-stack IPv6 socket cannot bind a port that an IPv4 "
                         "wildcard socket already holds.",
                .source = kIpv6Manual,
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "dual-stack",
                         "The new IPv6 socket has IPV6_V6ONLY=0, so it asks for [::]:P and 0.0.0.0:P at once, and "
                         "0.0.0.0:P is taken. This is the usual surprise when an IPv4-only service already runs on "
                         "a port and a dual-stack server starts: the error names an IPv6 bind, the holder is IPv4."},
                        {"EADDRINUSE", "",
                         "The IPv6 bind was refused; the socket table above shows what held the port."},
                        {"ok", "",
                         "The dual-stack socket bound although an IPv4 wildcard holds the port: this kernel checks "
                         "the IPv4 side of a dual-stack socket differently from what ipv6(7) describes."},
                    },
                .run = v4_then_dual_stack,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
