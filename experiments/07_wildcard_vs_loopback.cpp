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
// Usage: build/default/bin/07-wildcard-vs-loopback [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::describe_outcome;
using portreuse::Endpoint;
using portreuse::make_error;
using portreuse::outcome_name;

constexpr int kNoOption = 0;

// "SO_REUSEADDR=1", as the narration shows the option a step sets.
const char* option_text(int option) {
  return option == SO_REUSEPORT ? "SO_REUSEPORT=1" : "SO_REUSEADDR=1";
}

// A client connects to `to`; the kernel queues the connection on one of the two listeners, and
// that one accepts it. Returns 0 when socket A got it, 1 when socket B did.
int who_accepts(Lab& lab, const Endpoint& to, Trace& a, int a_fd, Trace& b, int b_fd) {
  auto client = lab.actor("client", Role::client);
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  // SO_LINGER 0 s: the client's close() sends RST, so these probes leave no TIME_WAIT behind.
  const linger reset_on_close{1, 0};
  client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof reset_on_close),
              "SO_LINGER {on, 0 s}");
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  std::array<pollfd, 2> listeners{{{a_fd, POLLIN, 0}, {b_fd, POLLIN, 0}}};
  const int ready = ::poll(listeners.data(), listeners.size(), 1000);
  if (ready <= 0) {
    throw ScenarioBroke{"neither listener had the connection to " + to.text() + " within 1 s (poll: " +
                        (ready == 0 ? std::string("timed out") : describe_outcome(make_error(errno))) + ")"};
  }
  const bool to_a = (listeners[0].revents & POLLIN) != 0;
  Trace& listener = to_a ? a : b;
  const int connection = listener.must("accept", ::accept(to_a ? a_fd : b_fd, nullptr, nullptr));
  client.must("close", ::close(fd));
  listener.must("close", ::close(connection));
  return to_a ? 0 : 1;
}

// When both sockets listen: a connection to 127.0.0.1 (both addresses cover it) and one to
// 127.0.0.2 (only the wildcard covers it). Does each go to the most specific match?
Situation where_connections_go(Lab& lab, Trace& a, int a_fd, const Endpoint& a_address, Trace& b, int b_fd) {
  lab.you("both listen: connect to 127.0.0.1 and to 127.0.0.2, and see who accepts each");
  const int wildcard = a_address.is_wildcard() ? 0 : 1;
  const int exact = 1 - wildcard;
  const bool loopback_to_exact = who_accepts(lab, lab.loopback(), a, a_fd, b, b_fd) == exact;
  const bool other_to_wildcard = who_accepts(lab, lab.address("127.0.0.2"), a, a_fd, b, b_fd) == wildcard;
  return loopback_to_exact && other_to_wildcard ? Situation::most_specific_wins : Situation::other_delivery;
}

// Socket A listens on `first`; socket B, with the same option (or none), then tries bind() and
// listen() on `second`, same port. B's last call answers the step.
Observation beside_a_listener(Lab& lab, const Endpoint& first, const Endpoint& second, int option) {
  const int on = 1;
  auto a = lab.actor("socket A", Role::server);
  const int a_fd = a.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (option != kNoOption) {
    a.must("setsockopt", ::setsockopt(a_fd, SOL_SOCKET, option, &on, sizeof on), option_text(option));
  }
  a.must("bind", ::bind(a_fd, first.raw(), first.raw_length()), first);
  a.must("listen", ::listen(a_fd, 8));
  const auto held = lab.show_sockets("the kernel's sockets for the port:");
  lab.pause("socket A listens: ss -tanl sport = :" + std::to_string(lab.port()));

  auto b = lab.actor("socket B", Role::server);
  const int b_fd = b.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (option != kNoOption) {
    b.must("setsockopt", ::setsockopt(b_fd, SOL_SOCKET, option, &on, sizeof on), option_text(option));
  }
  if (b.call("bind", ::bind(b_fd, second.raw(), second.raw_length()), second) == 0) {
    b.call("listen", ::listen(b_fd, 8));
  }
  const Event answer = lab.events().back();  // B's listen(), or its bind() when that was refused
  if (!answer.ok()) return lab.observe(answer, {Evidence::listening}, held);

  lab.show_sockets("the kernel's sockets for the port now:");
  const auto delivery = where_connections_go(lab, a, a_fd, first, b, b_fd);
  return lab.observe(answer, {Evidence::listening, Evidence::accepted}, delivery);
}

Observation wildcard_then_loopback(Lab& lab) {
  return beside_a_listener(lab, lab.wildcard(), lab.loopback(), kNoOption);
}

Observation loopback_then_wildcard(Lab& lab) {
  return beside_a_listener(lab, lab.loopback(), lab.wildcard(), kNoOption);
}

Observation wildcard_then_loopback_reuseaddr(Lab& lab) {
  return beside_a_listener(lab, lab.wildcard(), lab.loopback(), SO_REUSEADDR);
}

Observation wildcard_then_loopback_reuseport(Lab& lab) {
  return beside_a_listener(lab, lab.wildcard(), lab.loopback(), SO_REUSEPORT);
}

// "ok" or the errno name of a recorded call, as a JSON fact.
std::string outcome_of(const Event& event) {
  return outcome_name(make_error(event.error));
}

// Both sockets (SO_REUSEADDR) bind before either listens; then A listens, then B. B's listen()
// answers the step (or B's bind(), if that was already refused).
Observation bound_before_listen(Lab& lab) {
  const auto wildcard = lab.wildcard();
  const auto loopback = lab.loopback();
  const int on = 1;
  auto a = lab.actor("socket A", Role::server);
  const int a_fd = a.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  a.must("setsockopt", ::setsockopt(a_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  a.must("bind", ::bind(a_fd, wildcard.raw(), wildcard.raw_length()), wildcard);
  const Event first_bind = lab.events().back();

  auto b = lab.actor("socket B", Role::server);
  const int b_fd = b.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  b.must("setsockopt", ::setsockopt(b_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  b.call("bind", ::bind(b_fd, loopback.raw(), loopback.raw_length()), loopback);
  const Event second_bind = lab.events().back();
  if (!second_bind.ok()) {
    auto refused = lab.observe(second_bind, {}, Situation::second_bind_refused);
    refused.fact_text("first_bind", outcome_of(first_bind)).fact_text("second_bind", outcome_of(second_bind));
    return refused;
  }
  // Neither listens yet: a state the usual views of the socket table leave out.
  lab.show_sockets("the kernel's socket table for the port while both are only bound:");
  lab.narrator().line("kernel",
                      "sock_diag, asked for every state as this program does, lists a socket that is "
                      "only bound as CLOSE; /proc/net/tcp leaves it out");
  lab.pause("both only bound, none listens: ss -tan sport = :" + std::to_string(lab.port()));

  a.must("listen", ::listen(a_fd, 8));
  const Event first_listen = lab.events().back();
  b.call("listen", ::listen(b_fd, 8));
  const Event answer = lab.events().back();
  lab.show_sockets("the kernel's sockets for the port now:");
  auto situation = Situation::first_listening;
  if (answer.ok()) situation = where_connections_go(lab, a, a_fd, wildcard, b, b_fd);
  auto observation = lab.observe(answer, {Evidence::listening}, situation);
  observation.fact_text("first_bind", outcome_of(first_bind))
      .fact_text("second_bind", outcome_of(second_bind))
      .fact_text("first_listen", outcome_of(first_listen));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ---------------------

const std::string kBsdReuseAddress =
    "BSD-derived stacks (FreeBSD, NetBSD, OpenBSD, macOS): there SO_REUSEADDR relaxes the wildcard match in "
    "bind(), so a specific address may join a wildcard one on the same port even while that one listens; only "
    "an exact duplicate still needs SO_REUSEPORT. Documented in the BSD sources and in the Stack Overflow answer "
    "\"How do SO_REUSEADDR and SO_REUSEPORT differ?\"; not observed here.";

const Experiment kExperiment{
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
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::listener,
                         "0.0.0.0:P stands for every local address on port P, so it already covers 127.0.0.1:P: "
                         "the two bindings overlap. Without reuse options the kernel refuses any overlapping "
                         "address on a port (inet_csk_bind_conflict() treats the wildcard as equal to every "
                         "address). A packet for 127.0.0.1:P would otherwise have two owners."},
                        {EADDRINUSE, Situation::any,
                         "The kernel refused 127.0.0.1:P next to the wildcard socket; the socket table above shows "
                         "what held the port."},
                        {kOk, Situation::any,
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
                .claimed = EADDRINUSE,
                .said = Said::inference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::listener,
                         "Overlap works both ways: 0.0.0.0:P would include 127.0.0.1:P, which socket A already "
                         "holds. The kernel's check compares the two addresses symmetrically, so the order of the "
                         "binds does not matter."},
                        {EADDRINUSE, Situation::any,
                         "The kernel refused the wildcard next to 127.0.0.1:P; the socket table above shows what "
                         "held the port."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .elsewhere = kBsdReuseAddress,
                .explanations =
                    {
                        {EADDRINUSE, Situation::listener,
                         "On Linux SO_REUSEADDR excuses an overlap only when both sockets set it and the socket "
                         "already on the port is not listening (inet_csk_bind_conflict() checks the state). "
                         "Socket A was listening on 0.0.0.0:P, so B's SO_REUSEADDR changed nothing. socket(7) "
                         "says so too: reuse is allowed except when an active listener holds the address. The "
                         "article's result is BSD behaviour; on Linux the option that gives it is SO_REUSEPORT "
                         "(last step)."},
                        {EADDRINUSE, Situation::any,
                         "SO_REUSEADDR on both sockets did not let 127.0.0.1:P join the wildcard socket; the socket "
                         "table above shows what held the port."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .said = Said::inference,
                .elsewhere = kBsdReuseAddress,
                .explanations =
                    {
                        {EADDRINUSE, Situation::first_listening,
                         "Both binds passed: neither socket was listening and both had SO_REUSEADDR, which is "
                         "exactly the case Linux allows. But listen() runs the port check a second time, with the "
                         "socket now marked as listening (inet_csk_listen_start() calls the protocol's get_port "
                         "again). A's listen() passed, because B was not listening; by the time B asked, A was, "
                         "and a listener is never excused by SO_REUSEADDR. So Linux never lets a wildcard and a "
                         "specific listener share a port through SO_REUSEADDR; binding early only moves the "
                         "refusal from bind() to listen()."},
                        {EADDRINUSE, Situation::second_bind_refused,
                         "B's bind() was refused although neither socket was listening and both set SO_REUSEADDR. "
                         "Linux documents that case as allowed; this kernel was stricter."},
                        {EADDRINUSE, Situation::any, "B's listen() was refused; the calls above show how A's went."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .said = Said::inference,
                .explanations =
                    {
                        {kOk, Situation::most_specific_wins,
                         "SO_REUSEPORT on both sockets, owned by the same user, lets them share the port although "
                         "0.0.0.0 overlaps 127.0.0.1 and A was listening (Linux 3.9 and later). Delivery stays "
                         "unambiguous: the connection to 127.0.0.1 went to B, the exact match, and the one to "
                         "127.0.0.2, which only the wildcard covers, went to A. The kernel's listener lookup scores "
                         "an exact address above the wildcard. This is what the article wanted from SO_REUSEADDR."},
                        {kOk, Situation::any,
                         "Both sockets listen on the port thanks to SO_REUSEPORT; the accept lines above show which "
                         "socket took each connection."},
                        {EADDRINUSE, Situation::any,
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
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
