// 06-specific-addresses: two specific addresses share a port.
//
// Shows: a listener on 127.0.0.1:P and a second one on 127.0.0.2:P live side by side, and a
// connection to each address reaches the socket bound to that address. The article used a LAN
// address for the second server; on Linux the whole of 127.0.0.0/8 belongs to the loopback
// interface, so 127.0.0.2 works without any configuration and the experiment stays on loopback.
//
// Article: "Port reuse So_Reuseaddr" (two servers, two addresses, one port).
// Lesson: lessons/06-specific-addresses.md
//
// Usage: 06-specific-addresses [--port P] [--json] [--no-color] [--step]
#include "portreuse/clients.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// Two listening sockets of this process, no options, same port, different loopback addresses;
// then one connection to each address, to see which socket receives it.
Observation two_specific_addresses(StepContext& context) {
  const auto port = context.port();
  const auto first_address = context.loopback(port);
  const auto second_address = *Endpoint::parse("127.0.0.2", port);

  auto first = attempt_listen(context, "server A", first_address, SocketOptions{});
  if (first.deciding_outcome()) {
    return Observation::failed_setup("the first server could not listen on " + first_address.text() + ": " +
                                     describe_outcome(first.deciding_outcome()));
  }
  auto second = attempt_listen(context, "server B", second_address, SocketOptions{});
  Observation observation;
  observation.call = second.deciding_call();
  observation.outcome = second.deciding_outcome();
  context.show_sockets(port, "the kernel's sockets for the port:");
  if (observation.outcome) return observation;

  context.narrator().line("you", "connect once to each address: which server gets each connection?");
  const auto deliveries =
      deliver_to_listeners(context, {first_address, second_address}, {first.socket.get(), second.socket.get()});
  observation.situation = deliveries.most_specific_won ? "each-reached-its-own" : "misdelivered";
  observation.facts.emplace_back("deliveries", deliveries.lines_json());
  return observation;
}

const Experiment kExperiment{
    .number = "06",
    .slug = "specific-addresses",
    .title = "Two specific addresses share a port",
    .summary =
        "\"Two servers cannot use one port\" is only true when their addresses overlap. Two servers bound to "
        "two different specific addresses listen on the same port at once, and each receives the "
        "connections sent to its own address.",
    .steps =
        {
            Step{
                .id = "two-specific-addresses",
                .preview = "Listen on 127.0.0.1:P, then on 127.0.0.2:P (no options), then connect to each.",
                .claim = "Servers that bind different specific addresses can all listen on the same port; the "
                         "conflict people know comes from binding the port without naming an address.",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "each-reached-its-own",
                         "Both sockets listen on port P. bind() looks at every socket already on the port but refuses "
                         "only one whose address overlaps the new one; 127.0.0.1 and 127.0.0.2 never receive the "
                         "same packet, so there was nothing to refuse and no option was needed. Each connection "
                         "went to the socket bound to the address it was sent to. "
                         "127.0.0.2 needed no setup: Linux routes all of 127.0.0.0/8 to the loopback interface."},
                        {"ok", "",
                         "Both sockets listen on port P: their addresses do not overlap, so bind() had nothing to "
                         "refuse. The connections did not all reach the socket bound to their address, though; the "
                         "lines above show where each one went."},
                        {"EADDRNOTAVAIL", "",
                         "This system has no local address 127.0.0.2. Linux gives the whole of 127.0.0.0/8 to the "
                         "loopback interface; macOS and the BSDs configure only 127.0.0.1 until an alias is added "
                         "(for example: ifconfig lo0 alias 127.0.0.2)."},
                        {"EADDRINUSE", "",
                         "The kernel refused the second address although it does not overlap the first. That is "
                         "not the rule Linux documents; the socket table above shows what held the port."},
                    },
                .run = two_specific_addresses,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
