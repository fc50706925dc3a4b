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
// Usage: build/default/bin/06-specific-addresses [--port P] [--json] [--no-color] [--step]
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

// A client connects to `to`; the kernel queues the connection on one of the two listeners, and
// that one accepts it. Returns 0 when socket A got it, 1 when socket B did. Waiting on both at
// once lets the kernel's choice show, whichever it is.
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

// Two listening sockets of this process, no options, same port, different loopback addresses;
// then one connection to each address, to see which socket receives it.
Observation two_specific_addresses(Lab& lab) {
  const auto first = lab.loopback();             // 127.0.0.1:P
  const auto second = lab.address("127.0.0.2");  // 127.0.0.2:P

  auto a = lab.actor("socket A", Role::server);
  const int a_fd = a.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  a.must("bind", ::bind(a_fd, first.raw(), first.raw_length()), first);
  a.must("listen", ::listen(a_fd, 8));

  // Socket B: the same port, another address, no options. Its bind() and listen() answer.
  auto b = lab.actor("socket B", Role::server);
  const int b_fd = b.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (b.call("bind", ::bind(b_fd, second.raw(), second.raw_length()), second) == 0) {
    b.call("listen", ::listen(b_fd, 8));
  }
  const Event answer = lab.events().back();  // B's listen(), or its bind() when that was refused
  lab.show_sockets("the kernel's sockets for the port:");
  lab.pause("two listeners, one port: ss -tanl sport = :" + std::to_string(lab.port()));
  if (!answer.ok()) return lab.observe(answer, {Evidence::listening});

  lab.you("connect once to each address: which socket accepts each connection?");
  const bool a_got_its_own = who_accepts(lab, first, a, a_fd, b, b_fd) == 0;
  const bool b_got_its_own = who_accepts(lab, second, a, a_fd, b, b_fd) == 1;
  return lab.observe(answer, {Evidence::listening, Evidence::accepted},
                     a_got_its_own && b_got_its_own ? Situation::each_reached_its_own : Situation::other_delivery);
}

// ---- The claim, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
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
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::each_reached_its_own,
                         "Both sockets listen on port P. bind() looks at every socket already on the port but refuses "
                         "only one whose address overlaps the new one; 127.0.0.1 and 127.0.0.2 never receive the "
                         "same packet, so there was nothing to refuse and no option was needed. Each connection "
                         "went to the socket bound to the address it was sent to. "
                         "127.0.0.2 needed no setup: Linux routes all of 127.0.0.0/8 to the loopback interface."},
                        {kOk, Situation::any,
                         "Both sockets listen on port P: their addresses do not overlap, so bind() had nothing to "
                         "refuse. The connections did not all reach the socket bound to their address, though; the "
                         "accept lines above show which socket took each one."},
                        {EADDRNOTAVAIL, Situation::any,
                         "This system has no local address 127.0.0.2. Linux gives the whole of 127.0.0.0/8 to the "
                         "loopback interface; macOS and the BSDs configure only 127.0.0.1 until an alias is added "
                         "(for example: ifconfig lo0 alias 127.0.0.2)."},
                        {EADDRINUSE, Situation::any,
                         "The kernel refused the second address although it does not overlap the first. That is "
                         "not the rule Linux documents; the socket table above shows what held the port."},
                    },
                .run = two_specific_addresses,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
