// 12-udp: UDP: the same options, other rules.
//
// Shows: two UDP sockets cannot share 127.0.0.1:P without options (EADDRINUSE, as with TCP), but
// with SO_REUSEADDR on both Linux lets them, which it never does for two TCP listeners. Then it
// sends unicast datagrams to the shared port and counts which socket gets them: sharing the port
// does not mean sharing the traffic.
//
// Beyond the articles: they only talk about TCP servers. Claims from "Port reuse So_Reuseaddr"
// (one port, one socket) and the port reuse post ("端口复用", SO_REUSEADDR lets the port be bound
// again). Lesson: lessons/12-udp.md
//
// Usage: build/default/bin/12-udp [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Transport;

constexpr int kDatagrams = 20;
// Loopback delivers at once; the deadline only bounds the wait when something got lost.
constexpr int kDeliveryDeadlineMs = 500;

// How many UDP sockets the table just shown lists on the step's port.
int sockets_on_port(const Lab& lab) {
  int count = 0;
  for (const auto& entry : lab.table()) count += entry.local.port() == lab.port() ? 1 : 0;
  return count;
}

Observation udp_two_binds_plain(Lab& lab) {
  const auto address = lab.loopback();

  auto a = lab.actor("socket A");
  const int first = a.must("socket", ::socket(AF_INET, SOCK_DGRAM, 0));
  a.must("bind", ::bind(first, address.raw(), address.raw_length()), address);

  auto b = lab.actor("socket B");
  const int second = b.must("socket", ::socket(AF_INET, SOCK_DGRAM, 0));
  b.call("bind", ::bind(second, address.raw(), address.raw_length()), address);
  const Event answer = *lab.last(Call::bind, Role::other);  // socket B's

  const auto shown = lab.show_sockets("the kernel's UDP sockets for the port:", Transport::udp);
  lab.pause("one UDP socket holds the port: ss -uan sport = :" + std::to_string(lab.port()));
  auto observation = lab.observe(answer, {}, shown);
  observation.fact("udp_sockets_on_port", std::to_string(sockets_on_port(lab)));
  return observation;
}

Observation udp_two_binds_reuseaddr(Lab& lab) {
  const auto address = lab.loopback();
  const int on = 1;

  auto a = lab.actor("socket A");
  const int first = a.must("socket", ::socket(AF_INET, SOCK_DGRAM, 0));
  a.must("setsockopt", ::setsockopt(first, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  a.must("bind", ::bind(first, address.raw(), address.raw_length()), address);

  auto b = lab.actor("socket B");
  const int second = b.must("socket", ::socket(AF_INET, SOCK_DGRAM, 0));
  b.must("setsockopt", ::setsockopt(second, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  b.call("bind", ::bind(second, address.raw(), address.raw_length()), address);
  const Event answer = *lab.last(Call::bind, Role::other);  // socket B's

  lab.show_sockets("the kernel's UDP sockets for the port:", Transport::udp);
  const auto on_port = std::to_string(sockets_on_port(lab));
  lab.pause("two UDP sockets on one port: ss -uan sport = :" + std::to_string(lab.port()));
  if (!answer.ok()) {
    auto refused = lab.observe(answer, {}, Situation::any);
    refused.fact("udp_sockets_on_port", on_port);
    return refused;
  }

  // A third socket sends unicast datagrams to the shared address; 20 sendto() calls and what
  // arrives are not printed one by one (quiet traces list only failures): the totals follow.
  auto c = lab.actor("socket C");
  const int sender = c.must("socket", ::socket(AF_INET, SOCK_DGRAM, 0));
  auto sending = lab.actor("socket C").quiet();
  for (int index = 1; index <= kDatagrams; ++index) {
    const std::string payload = "datagram " + std::to_string(index);
    sending.must("sendto", ::sendto(sender, payload.data(), payload.size(), 0, address.raw(), address.raw_length()),
                 address);
  }
  c.note("sent " + std::to_string(kDatagrams) + " datagrams to " + address.text() + ", one sendto() each");

  // Whichever socket has a datagram waiting reads it, until all arrived or none came for a while.
  std::array<Trace, 2> receivers{lab.actor("socket A").quiet(), lab.actor("socket B").quiet()};
  std::array<int, 2> received{0, 0};
  std::array<char, 64> buffer{};
  while (received[0] + received[1] < kDatagrams) {
    std::array<pollfd, 2> ready{pollfd{first, POLLIN, 0}, pollfd{second, POLLIN, 0}};
    if (::poll(ready.data(), ready.size(), kDeliveryDeadlineMs) <= 0) break;
    for (std::size_t which = 0; which < ready.size(); ++which) {
      if ((ready[which].revents & POLLIN) == 0) continue;
      receivers[which].must("recvfrom", ::recvfrom(ready[which].fd, buffer.data(), buffer.size(), 0, nullptr, nullptr));
      ++received[which];
    }
  }
  const auto of = " of " + std::to_string(kDatagrams);
  a.note("(bound first) received " + std::to_string(received[0]) + of);
  b.note("(bound second) received " + std::to_string(received[1]) + of);

  const Situation delivery = received[0] == 0 && received[1] == 0 ? Situation::none_arrived
                             : received[0] == 0                   ? Situation::all_to_second
                             : received[1] == 0                   ? Situation::all_to_first
                                                                  : Situation::shared;
  auto observation = lab.observe(answer, {}, delivery);
  observation.fact("udp_sockets_on_port", on_port);
  observation.fact("sent", std::to_string(kDatagrams));
  observation.fact("received_first", std::to_string(received[0]));
  observation.fact("received_second", std::to_string(received[1]));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "The articles only speak of TCP servers. UDP sockets bind ports too, and SO_REUSEADDR means something "
        "else for them: watch two UDP sockets share one port, and see which of them the datagrams reach.",
    .steps =
        {
            Step{
                .id = "udp-two-binds-plain",
                .preview = "Two UDP sockets, no options, both bind 127.0.0.1:P.",
                .claim = "One address and port belong to one socket: a second bind() of the same port fails with "
                         "'Address already in use' (said of TCP servers; tried here with UDP).",
                .source = "\"Port reuse So_Reuseaddr\"",
                .claimed = EADDRINUSE,
                .said = Said::inference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::any,
                         "Without options UDP follows the same first rule as TCP: 127.0.0.1:P already belongs to "
                         "socket A, so the kernel refuses socket B at bind(). What differs is everything after: a "
                         "UDP socket has no connection to finish, so when it is closed the port is free at once. "
                         "There is no TIME_WAIT in UDP, and the restart problem of the articles cannot happen."},
                        {kOk, Situation::any,
                         "Both sockets bound the same address and port without any option. Linux refuses that; "
                         "this kernel follows other rules than the ones this lesson describes."},
                    },
                .run = udp_two_binds_plain,
            },
            Step{
                .id = "udp-two-binds-reuseaddr",
                .preview = "Two UDP sockets with SO_REUSEADDR bind 127.0.0.1:P; a third socket sends them 20 "
                           "datagrams. Who receives them?",
                .claim = "With SO_REUSEADDR (or SO_REUSEPORT) set before bind(), the same port can be bound again.",
                .source = "\"端口复用 (bind error: Address already in use 问题)\"",
                .claimed = kOk,
                .said = Said::inference,
                .explanations =
                    {
                        {kOk, Situation::all_to_second,
                         "For UDP, SO_REUSEADDR on every socket is all Linux asks before letting them share an "
                         "address and port, even the very same one; two TCP listeners are refused even with it. "
                         "But sharing the port is not sharing the traffic: for each unicast "
                         "datagram the kernel picks exactly one socket. Both sockets match equally well, there is no "
                         "SO_REUSEPORT group to spread the load, so the one found first takes every datagram, and "
                         "here that was the socket bound last. Socket A gets nothing and is not told. The option "
                         "exists for multicast and broadcast receivers, where each member gets its own copy."},
                        {kOk, Situation::all_to_first,
                         "Both binds passed: SO_REUSEADDR on both sockets is enough for UDP on Linux. Every unicast "
                         "datagram went to the socket bound first and none to the second: the kernel delivers each "
                         "unicast datagram to one socket only, and here it kept choosing the older one."},
                        {kOk, Situation::shared,
                         "Both binds passed, and both sockets received some of the unicast datagrams. Linux without "
                         "SO_REUSEPORT normally hands all unicast traffic to one socket; this kernel spread it."},
                        {kOk, Situation::none_arrived,
                         "Both binds passed, but neither socket received any of the datagrams within the deadline. "
                         "Loopback should deliver them at once; something on this system dropped them."},
                        {kOk, Situation::any,
                         "Both UDP sockets are bound to the same address and port: SO_REUSEADDR on both is what "
                         "Linux asks for UDP."},
                        {EADDRINUSE, Situation::any,
                         "The second bind was refused although both sockets set SO_REUSEADDR. Linux lets UDP sockets "
                         "share a port this way; this kernel does not."},
                    },
                .run = udp_two_binds_reuseaddr,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
