// 07-wildcard-vs-loopback: the wildcard address against a specific one.
//
// Shows: 0.0.0.0:P and 127.0.0.1:P overlap, so Linux refuses the second of them in either order.
// SO_REUSEADDR does not change that while the first socket listens (the article says it does: it
// does on BSD); binding both before either listens only moves the refusal to listen(). On Linux
// the option that lets a wildcard and a specific listener share a port is SO_REUSEPORT.
//
// Article: "Port reuse So_Reuseaddr" (INADDR_ANY, then 127.0.0.1, with and without SO_REUSEADDR).
// Lesson: lessons/07-wildcard-vs-loopback.md
//
// Usage: 07-wildcard-vs-loopback [--port P] [--json] [--no-color] [--step]
#include "portreuse/clients.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

const SocketOptions kNoOptions{};
const SocketOptions kReuseAddress{.reuse_address = 1};
const SocketOptions kReusePort{.reuse_port = 1};

// When both sockets ended up listening: a connection to 127.0.0.1 (both addresses cover it) and
// one to 127.0.0.2 (only the wildcard covers it) show which socket the kernel prefers.
void observe_deliveries(const StepContext& context, Observation& observation, const std::vector<int>& listeners) {
  const auto port = context.port();
  context.narrator().line("you", "both listen: connect to 127.0.0.1 and to 127.0.0.2, and see who gets each");
  const auto deliveries =
      deliver_to_listeners(context, {context.loopback(port), *Endpoint::parse("127.0.0.2", port)}, listeners);
  observation.situation = deliveries.most_specific_won ? "most-specific-wins" : "other-delivery";
  observation.facts.emplace_back("deliveries", deliveries.lines_json());
}

// Socket A listens on `first`; socket B, with the same options, then tries bind() and listen()
// on `second`, same port. The outcome is B's.
Observation beside_a_listener(StepContext& context, const char* first_address, const char* second_address,
                              const SocketOptions& options) {
  const auto port = context.port();
  const auto first = *Endpoint::parse(first_address, port);
  const auto second = *Endpoint::parse(second_address, port);
  auto holder = attempt_listen(context, "socket A", first, options);
  if (holder.deciding_outcome()) {
    return Observation::failed_setup("socket A could not listen on " + first.text() + ": " +
                                     describe_outcome(holder.deciding_outcome()));
  }
  const auto bound = context.show_sockets(port, "the kernel's sockets for the port:");
  auto newcomer = attempt_listen(context, "socket B", second, options);
  Observation observation;
  observation.call = newcomer.deciding_call();
  observation.outcome = newcomer.deciding_outcome();
  observation.situation = classify_holders(bound);
  if (!observation.outcome) observe_deliveries(context, observation, {holder.socket.get(), newcomer.socket.get()});
  return observation;
}

Observation wildcard_then_loopback(StepContext& context) {
  return beside_a_listener(context, "0.0.0.0", "127.0.0.1", kNoOptions);
}

Observation loopback_then_wildcard(StepContext& context) {
  return beside_a_listener(context, "127.0.0.1", "0.0.0.0", kNoOptions);
}

Observation wildcard_then_loopback_reuseaddr(StepContext& context) {
  return beside_a_listener(context, "0.0.0.0", "127.0.0.1", kReuseAddress);
}

Observation wildcard_then_loopback_reuseport(StepContext& context) {
  return beside_a_listener(context, "0.0.0.0", "127.0.0.1", kReusePort);
}

// Both sockets (SO_REUSEADDR) bind before either listens; then A listens, then B. The outcome is
// B's listen() (or B's bind(), if that was already refused); the other calls are kept as facts.
Observation bound_before_listen(StepContext& context) {
  const auto& narrator = context.narrator();
  const auto port = context.port();
  auto wildcard = attempt_listen(context, "socket A", context.wildcard(port), kReuseAddress, false);
  if (wildcard.bind_outcome) {
    return Observation::failed_setup("socket A could not bind " + context.wildcard(port).text() + ": " +
                                     describe_outcome(wildcard.bind_outcome));
  }
  auto loopback = attempt_listen(context, "socket B", context.loopback(port), kReuseAddress, false);
  Observation observation;
  observation.facts.emplace_back("first_bind", json_quote(outcome_name(wildcard.bind_outcome)));
  observation.facts.emplace_back("second_bind", json_quote(outcome_name(loopback.bind_outcome)));
  if (loopback.bind_outcome) {
    observation.call = "bind";
    observation.outcome = loopback.bind_outcome;
    observation.situation = "second-bind-refused";
    return observation;
  }
  context.show_sockets(port, "what /proc/net/tcp lists for the port while both are only bound:");
  const auto first_listen = listen_on(wildcard.socket.get());
  narrator.call("socket A", "listen", first_listen);
  const auto second_listen = listen_on(loopback.socket.get());
  narrator.call("socket B", "listen", second_listen);
  context.show_sockets(port, "the kernel's sockets for the port now:");
  observation.facts.emplace_back("first_listen", json_quote(outcome_name(first_listen)));
  observation.call = "listen";
  observation.outcome = second_listen;
  observation.situation = first_listen ? "first-not-listening" : "first-listening";
  if (!first_listen && !second_listen) {
    observe_deliveries(context, observation, {wildcard.socket.get(), loopback.socket.get()});
  }
  return observation;
}

const std::string kBsdReuseAddress =
    "BSD-derived stacks (FreeBSD, NetBSD, OpenBSD, macOS): there SO_REUSEADDR relaxes the wildcard match in "
    "bind(), so a specific address may join a wildcard one on the same port even while that one listens; only "
    "an exact duplicate still needs SO_REUSEPORT. Documented in the BSD sources and in the Stack Overflow answer "
    "\"How do SO_REUSEADDR and SO_REUSEPORT differ?\"; not observed here.";

const Experiment kExperiment{
    .number = "07",
    .slug = "wildcard-vs-loopback",
    .title = "The wildcard address against a specific one",
    .summary =
        "0.0.0.0:P means every local address on port P, 127.0.0.1 included. Watch Linux refuse the overlap in "
        "both orders, see that SO_REUSEADDR does not rescue it (the article says it does), and find the option "
        "that does.",
    .steps =
        {
            Step{
                .id = "wildcard-then-loopback",
                .preview = "Listen on 0.0.0.0:P, then bind 127.0.0.1:P (no options).",
                .claim = "Once a server listens on INADDR_ANY and a port, a second server cannot bind 127.0.0.1 "
                         "on that port: 'Address already in use'.",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "listener",
                         "0.0.0.0:P stands for every local address on port P, so it already covers 127.0.0.1:P: "
                         "the two bindings overlap. Without reuse options the kernel refuses any overlapping "
                         "address on a port (inet_csk_bind_conflict() treats the wildcard as equal to every "
                         "address). A packet for 127.0.0.1:P would otherwise have two owners."},
                        {"EADDRINUSE", "",
                         "The kernel refused 127.0.0.1:P next to the wildcard socket; the socket table above shows "
                         "what held the port."},
                        {"ok", "",
                         "The kernel let a specific address join a listening wildcard socket without any option. "
                         "Linux does not document that; compare with the platform notes in the lesson."},
                    },
                .run = wildcard_then_loopback,
            },
            Step{
                .id = "loopback-then-wildcard",
                .preview = "Listen on 127.0.0.1:P, then bind 0.0.0.0:P (no options).",
                .claim = "The conflict does not depend on the order: a wildcard bind on a port where 127.0.0.1 "
                         "already listens is refused as well (the article's reasoning, applied the other way round).",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "listener",
                         "Overlap works both ways: 0.0.0.0:P would include 127.0.0.1:P, which socket A already "
                         "holds. The kernel's check compares the two addresses symmetrically, so the order of the "
                         "binds does not matter."},
                        {"EADDRINUSE", "",
                         "The kernel refused the wildcard next to 127.0.0.1:P; the socket table above shows what "
                         "held the port."},
                        {"ok", "",
                         "The kernel let the wildcard join a listening 127.0.0.1 socket without any option. Linux "
                         "does not document that; compare with the platform notes in the lesson."},
                    },
                .run = loopback_then_wildcard,
            },
            Step{
                .id = "wildcard-then-loopback-reuseaddr",
                .preview = "Both sockets set SO_REUSEADDR; listen on 0.0.0.0:P, then bind 127.0.0.1:P.",
                .claim = "With SO_REUSEADDR set on both sockets, the 127.0.0.1 server can bind and listen next to "
                         "the INADDR_ANY one: the option tells the system who gets which packets.",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "ok",
                .expected_linux = "EADDRINUSE",
                .elsewhere = kBsdReuseAddress,
                .explanations =
                    {
                        {"EADDRINUSE", "listener",
                         "On Linux SO_REUSEADDR excuses an overlap only when both sockets set it and the socket "
                         "already on the port is not listening (inet_csk_bind_conflict() checks the state). "
                         "Socket A was listening on 0.0.0.0:P, so B's SO_REUSEADDR changed nothing. socket(7) "
                         "says so too: reuse is allowed except when an active listener holds the address. The "
                         "article's result is BSD behaviour; on Linux the option that gives it is SO_REUSEPORT "
                         "(last step)."},
                        {"EADDRINUSE", "",
                         "SO_REUSEADDR on both sockets did not let 127.0.0.1:P join the wildcard socket; the socket "
                         "table above shows what held the port."},
                        {"ok", "",
                         "127.0.0.1:P joined a listening wildcard socket thanks to SO_REUSEADDR: this kernel treats "
                         "the option the BSD way, not the way Linux documents it in socket(7)."},
                    },
                .run = wildcard_then_loopback_reuseaddr,
            },
            Step{
                .id = "wildcard-then-loopback-reuseaddr-before-listen",
                .preview = "Both set SO_REUSEADDR and bind (0.0.0.0:P, 127.0.0.1:P) before either listens; then "
                           "A listens, then B.",
                .claim = "With SO_REUSEADDR on both, a wildcard server and a 127.0.0.1 server can share the port, "
                         "whatever the order of the calls.",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "ok",
                .expected_linux = "EADDRINUSE",
                .elsewhere = kBsdReuseAddress,
                .explanations =
                    {
                        {"EADDRINUSE", "first-listening",
                         "Both binds passed: neither socket was listening and both had SO_REUSEADDR, which is "
                         "exactly the case Linux allows. But listen() runs the port check a second time, with the "
                         "socket now marked as listening (inet_csk_listen_start() calls the protocol's get_port "
                         "again). A's listen() passed, because B was not listening; by the time B asked, A was, "
                         "and a listener is never excused by SO_REUSEADDR. So Linux never lets a wildcard and a "
                         "specific listener share a port through SO_REUSEADDR; binding early only moves the "
                         "refusal from bind() to listen()."},
                        {"EADDRINUSE", "second-bind-refused",
                         "B's bind() was refused although neither socket was listening and both set SO_REUSEADDR. "
                         "Linux documents that case as allowed; this kernel was stricter."},
                        {"EADDRINUSE", "", "B's listen() was refused; the facts show how A's listen() went."},
                        {"ok", "",
                         "Both sockets are listening on the port: this kernel accepted at listen() the overlap "
                         "SO_REUSEADDR allowed at bind(). That is the BSD behaviour, not the one Linux documents."},
                    },
                .run = bound_before_listen,
            },
            Step{
                .id = "wildcard-then-loopback-reuseport",
                .preview = "Both sockets set SO_REUSEPORT; listen on 0.0.0.0:P, then on 127.0.0.1:P; connect to "
                           "each address.",
                .claim = "With a reuse option on both sockets, a wildcard server and a 127.0.0.1 server share the "
                         "port (the article credits SO_REUSEADDR; this step sets SO_REUSEPORT instead).",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "most-specific-wins",
                         "SO_REUSEPORT on both sockets, owned by the same user, lets them share the port although "
                         "0.0.0.0 overlaps 127.0.0.1 and A was listening (Linux 3.9 and later). Delivery stays "
                         "unambiguous: the connection to 127.0.0.1 went to B, the exact match, and the one to "
                         "127.0.0.2, which only the wildcard covers, went to A. The kernel's listener lookup scores "
                         "an exact address above the wildcard. This is what the article wanted from SO_REUSEADDR."},
                        {"ok", "",
                         "Both sockets listen on the port thanks to SO_REUSEPORT; the lines above show where each "
                         "connection went."},
                        {"EADDRINUSE", "",
                         "SO_REUSEPORT on both sockets did not let them share the port. Linux has the option since "
                         "3.9, and it requires both sockets to belong to the same user; the socket table above "
                         "shows what held the port."},
                    },
                .run = wildcard_then_loopback_reuseport,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
