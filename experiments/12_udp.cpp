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
// Usage: 12-udp [--port P] [--json] [--no-color] [--step]
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <chrono>

#include "portreuse/experiment.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

constexpr int kDatagrams = 20;
// Loopback delivers at once; the deadline only bounds the wait when something got lost.
constexpr Millis kDeliveryDeadline{500};

// The step's port is free for TCP; UDP keeps a table of its own, so it is checked there too.
Result<std::uint16_t> free_udp_port(const StepContext& context) {
  std::uint16_t port = context.port();
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto holders = sockets_holding(port, Transport::udp);
    if (!holders || holders->empty()) return port;
    context.narrator().line("kernel",
                            "UDP port " + std::to_string(port) + " is taken by another program; using another");
    auto fresh = context.fresh_port();
    if (!fresh) return fresh.error();
    port = *fresh;
  }
  return make_error(EADDRINUSE);
}

std::vector<SocketEntry> show_udp_sockets(const StepContext& context, std::uint16_t port) {
  auto table = read_socket_table(Transport::udp);
  if (!table) {
    context.narrator().line("kernel", "cannot read the UDP socket table (" + describe_outcome(table.error()) + ")");
    return {};
  }
  auto bound = bound_to_port(*table, port);
  std::vector<std::string> rows;
  for (const auto& entry : bound) rows.push_back(entry.describe());
  context.narrator().table("kernel", "the kernel's UDP sockets on port " + std::to_string(port) + ":", rows);
  return bound;
}

// Reads every datagram waiting on the socket without blocking; returns how many there were.
int drain(int fd) {
  std::array<char, 64> buffer{};
  int count = 0;
  for (;;) {
    const auto got = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (got >= 0) {
      ++count;
    } else if (errno != EINTR) {
      return count;
    }
  }
}

// Counts the datagrams each socket receives until all `expected` are in or the deadline passes.
std::pair<int, int> count_arrivals(int first, int second, int expected) {
  int to_first = 0;
  int to_second = 0;
  const auto until = std::chrono::steady_clock::now() + kDeliveryDeadline;
  while (to_first + to_second < expected) {
    const auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    std::array<pollfd, 2> watched{pollfd{first, POLLIN, 0}, pollfd{second, POLLIN, 0}};
    const int ready = ::poll(watched.data(), watched.size(), static_cast<int>(left));
    if (ready < 0 && errno != EINTR) break;
    if (watched[0].revents & POLLIN) to_first += drain(first);
    if (watched[1].revents & POLLIN) to_second += drain(second);
  }
  return {to_first, to_second};
}

std::string delivery_situation(int to_first, int to_second) {
  if (to_first == 0 && to_second == 0) return "none-arrived";
  if (to_first == 0) return "all-to-second";
  if (to_second == 0) return "all-to-first";
  return "shared";
}

// Two UDP sockets of this process bind the same address and port; with `send_traffic` a third
// socket then sends unicast datagrams to it and each socket's share is counted.
Observation two_udp_binds(StepContext& context, const SocketOptions& options, bool send_traffic) {
  const auto& narrator = context.narrator();
  const auto port = free_udp_port(context);
  if (!port) return Observation::failed_setup("no free UDP port: " + describe_outcome(port.error()));
  const auto where = context.loopback(*port);

  auto first = attempt_listen(context, "socket A", where, options, false, Transport::udp);
  if (first.bind_outcome) return Observation::failed_setup("the first UDP socket could not bind " + where.text());
  auto second = attempt_listen(context, "socket B", where, options, false, Transport::udp);
  const auto bound = show_udp_sockets(context, *port);

  Observation observation;
  observation.call = second.deciding_call();
  observation.outcome = second.deciding_outcome();
  observation.facts.emplace_back("udp_sockets_on_port", std::to_string(bound.size()));
  if (!send_traffic || observation.outcome) return observation;

  auto sender = open_socket(AF_INET, Transport::udp);
  if (!sender) return Observation::failed_setup("socket: " + describe_outcome(sender.error()));
  int sent = 0;
  std::error_code send_error;
  for (int index = 0; index < kDatagrams; ++index) {
    const std::string payload = "datagram " + std::to_string(index + 1);
    if (::sendto(sender->get(), payload.data(), payload.size(), 0, where.raw(), where.raw_length()) < 0) {
      send_error = last_error();
      break;
    }
    ++sent;
  }
  const auto from = local_endpoint(sender->get());
  narrator.call("socket C",
                "sendto " + where.text() + " x" + std::to_string(kDatagrams) + (from ? " from " + from->text() : ""),
                send_error);
  if (sent == 0) return Observation::failed_setup("no datagram could be sent: " + describe_outcome(send_error));

  const auto [to_first, to_second] = count_arrivals(first.socket.get(), second.socket.get(), sent);
  narrator.line("socket A", "(bound first) received " + std::to_string(to_first) + " of " + std::to_string(sent));
  narrator.line("socket B", "(bound second) received " + std::to_string(to_second) + " of " + std::to_string(sent));
  observation.situation = delivery_situation(to_first, to_second);
  observation.facts.emplace_back("sent", std::to_string(sent));
  observation.facts.emplace_back("received_first", std::to_string(to_first));
  observation.facts.emplace_back("received_second", std::to_string(to_second));
  return observation;
}

Observation udp_two_binds_plain(StepContext& context) {
  return two_udp_binds(context, SocketOptions{}, false);
}

Observation udp_two_binds_reuseaddr(StepContext& context) {
  return two_udp_binds(context, SocketOptions{.reuse_address = 1}, true);
}

const Experiment kExperiment{
    .number = "12",
    .slug = "udp",
    .title = "UDP: the same options, other rules",
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
                .claimed = "EADDRINUSE",
                .expected_linux = "EADDRINUSE",
                .elsewhere = "",
                .explanations =
                    {
                        {"EADDRINUSE", "",
                         "Without options UDP follows the same first rule as TCP: 127.0.0.1:P already belongs to "
                         "socket A, so the kernel refuses socket B at bind(). What differs is everything after: a "
                         "UDP socket has no connection to finish, so when it is closed the port is free at once. "
                         "There is no TIME_WAIT in UDP, and the restart problem of the articles cannot happen."},
                        {"ok", "",
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
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "all-to-second",
                         "For UDP, SO_REUSEADDR on every socket is all Linux asks before letting them share an "
                         "address and port, even the very same one; two TCP listeners are refused even with it. "
                         "But sharing the port is not sharing the traffic: for each unicast "
                         "datagram the kernel picks exactly one socket. Both sockets match equally well, there is no "
                         "SO_REUSEPORT group to spread the load, so the one found first takes every datagram, and "
                         "here that was the socket bound last. Socket A gets nothing and is not told. The option "
                         "exists for multicast and broadcast receivers, where each member gets its own copy."},
                        {"ok", "all-to-first",
                         "Both binds passed: SO_REUSEADDR on both sockets is enough for UDP on Linux. Every unicast "
                         "datagram went to the socket bound first and none to the second: the kernel delivers each "
                         "unicast datagram to one socket only, and here it kept choosing the older one."},
                        {"ok", "shared",
                         "Both binds passed, and both sockets received some of the unicast datagrams. Linux without "
                         "SO_REUSEPORT normally hands all unicast traffic to one socket; this kernel spread it."},
                        {"ok", "none-arrived",
                         "Both binds passed, but neither socket received any of the datagrams within the deadline. "
                         "Loopback should deliver them at once; something on this system dropped them."},
                        {"ok", "",
                         "Both UDP sockets are bound to the same address and port: SO_REUSEADDR on both is what "
                         "Linux asks for UDP."},
                        {"EADDRINUSE", "",
                         "The second bind was refused although both sockets set SO_REUSEADDR. Linux lets UDP sockets "
                         "share a port this way; this kernel does not."},
                    },
                .run = udp_two_binds_reuseaddr,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
