// 11-dual-stack: IPv6 dual stack and IPv4 on one port.
//
// Shows: a socket on [::]:P with IPV6_V6ONLY=0 also takes IPv4 connections, so it holds 0.0.0.0:P
// as well and an IPv4 wildcard bind to P fails, in either order; with IPV6_V6ONLY=1 the two
// families are separate and both servers bind. The system default comes from
// net.ipv6.bindv6only, read and shown by every step.
//
// Beyond the articles (they only use IPv4): ipv6(7), IPV6_V6ONLY. Lesson: lessons/11-dual-stack.md
//
// Usage: build/default/bin/11-dual-stack [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::describe_outcome;
using portreuse::Endpoint;
using portreuse::make_error;
using portreuse::outcome_name;

// net.ipv6.bindv6only: the IPV6_V6ONLY a new IPv6 socket starts with. Shown, and kept as a JSON
// number ("null" when it cannot be read); every step sets the option itself.
std::string read_bindv6only(Lab& lab) {
  std::ifstream file("/proc/sys/net/ipv6/bindv6only");
  int value = -1;
  if (!(file >> value) || (value != 0 && value != 1)) {
    lab.narrator().line("kernel", "net.ipv6.bindv6only cannot be read");
    return "null";
  }
  lab.narrator().line("kernel", "net.ipv6.bindv6only = " + std::to_string(value) +
                                    ": the IPV6_V6ONLY a new IPv6 socket starts with (this step sets it)");
  return std::to_string(value);
}

// Why this system cannot run the step, or nullopt when it can: without IPv6, socket(AF_INET6)
// fails with EAFNOSUPPORT; with IPv6 off on the loopback interface, ::1 cannot be bound. Any
// other failure is this run's, not the system's: the step cannot run.
std::optional<std::string> ipv6_missing(Lab& lab) {
  auto check = lab.actor("IPv6 check");
  check.quiet();  // only a failure is worth a line
  const int fd = check.call("socket", ::socket(AF_INET6, SOCK_STREAM, 0));
  if (fd < 0) {
    if (lab.events().back().error == EAFNOSUPPORT) return "this system has no IPv6 sockets (EAFNOSUPPORT)";
    throw ScenarioBroke{"the IPv6 check could not open a socket"};
  }
  const auto loopback6 = lab.address("::1").with_port(0);
  const int error = check.call("bind", ::bind(fd, loopback6.raw(), loopback6.raw_length()), loopback6) == 0
                        ? 0
                        : lab.events().back().error;
  check.must("close", ::close(fd));
  if (error == EADDRNOTAVAIL) return "::1 cannot be bound (EADDRNOTAVAIL): IPv6 is off on the loopback interface";
  if (error != 0) throw ScenarioBroke{"the IPv6 check could not bind ::1"};
  return std::nullopt;
}

struct Listener {
  Trace* trace;
  int fd;
};

// Where one IPv4 client to 127.0.0.1:P lands: connect() refused, or accepted by one of the
// listeners, which sees the client's address (in IPv4-mapped form if it is an IPv6 socket), or
// queued on none of them in time.
struct Landing {
  int refused = 0;                         // connect()'s errno when it failed
  std::optional<std::size_t> accepted_by;  // which of the listeners accepted it
  std::string text;                        // the same in words, for the narration and the JSON
};

Landing ipv4_client(Lab& lab, const std::vector<Listener>& listeners) {
  const auto to = lab.loopback();
  auto client = lab.actor("IPv4 client", Role::client);
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  // SO_LINGER 0 s: the client's close() sends RST, so these probes leave no TIME_WAIT behind.
  const linger reset_on_close{1, 0};
  client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof reset_on_close),
              "SO_LINGER {on, 0 s}");
  Landing landing;
  if (client.call("connect", ::connect(fd, to.raw(), to.raw_length()), to) != 0) {
    landing.refused = lab.events().back().error;
    landing.text = "connect() fails with " + outcome_name(make_error(landing.refused));
    client.must("close", ::close(fd));
    return landing;
  }
  std::vector<pollfd> waiting;
  for (const auto& listener : listeners) waiting.push_back({listener.fd, POLLIN, 0});
  const int ready = ::poll(waiting.data(), waiting.size(), 1000);
  if (ready <= 0) {
    // Where the client went is what this probe shows, not a step's precondition: say so, go on.
    landing.text = "connected, but no listener had the connection within 1 s (poll: " +
                   (ready == 0 ? std::string("timed out") : describe_outcome(make_error(errno))) + ")";
    client.note(landing.text);
    client.must("close", ::close(fd));
    return landing;
  }
  for (std::size_t index = 0; index < listeners.size(); ++index) {
    if ((waiting[index].revents & POLLIN) == 0) continue;
    Trace& listener = *listeners[index].trace;
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int connection =
        listener.must("accept", ::accept(listeners[index].fd, reinterpret_cast<sockaddr*>(&peer), &length));
    const auto seen_as = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&peer), length);
    landing.accepted_by = index;
    landing.text = "accepted by the " + listener.actor() + ", which sees the client as " + seen_as.text();
    listener.note("sees the client as " + seen_as.text());
    client.must("close", ::close(fd));
    listener.must("close", ::close(connection));
    break;
  }
  return landing;
}

// The IPV6_V6ONLY an IPv6 socket really has, read back from the kernel.
int v6only_of(Trace& t, int fd) {
  int value = -1;
  socklen_t length = sizeof value;
  t.must("getsockopt", ::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &value, &length), "IPV6_V6ONLY");
  t.note("reads back IPV6_V6ONLY=" + std::to_string(value));
  return value;
}

// An IPv6 server listens on [::]:P with IPV6_V6ONLY set to `v6only`; an IPv4 client tries the
// port; then an IPv4 server binds 0.0.0.0:P and listens. The IPv4 server's last call answers.
Observation ipv6_then_ipv4(Lab& lab, int v6only) {
  const auto bindv6only = read_bindv6only(lab);
  if (auto why = ipv6_missing(lab)) {
    auto skipped = lab.skip("bind", *why);
    skipped.fact("bindv6only", bindv6only);
    return skipped;
  }
  const auto ipv6_any = lab.address("::");  // [::]:P
  const auto ipv4_any = lab.wildcard();     // 0.0.0.0:P

  auto six = lab.actor("IPv6 server", Role::server);
  const int six_fd = six.must("socket", ::socket(AF_INET6, SOCK_STREAM, 0));
  six.must("setsockopt", ::setsockopt(six_fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only),
           "IPV6_V6ONLY=" + std::to_string(v6only));
  six.must("bind", ::bind(six_fd, ipv6_any.raw(), ipv6_any.raw_length()), ipv6_any);
  six.must("listen", ::listen(six_fd, 8));
  lab.pause("the IPv6 server listens: ss -tanl sport = :" + std::to_string(lab.port()));
  const auto before = ipv4_client(lab, {{&six, six_fd}});

  auto four = lab.actor("IPv4 server", Role::server);
  const int four_fd = four.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (four.call("bind", ::bind(four_fd, ipv4_any.raw(), ipv4_any.raw_length()), ipv4_any) == 0) {
    four.call("listen", ::listen(four_fd, 8));
  }
  const Event answer = lab.events().back();  // the IPv4 server's listen(), or its refused bind()
  lab.show_sockets("the kernel's sockets for the port:");
  std::optional<Landing> after;
  if (answer.ok()) after = ipv4_client(lab, {{&six, six_fd}, {&four, four_fd}});

  // IPV6_V6ONLY as read back, confirmed by where the IPv4 client went while the IPv6 socket was
  // alone: accepted by it (dual stack), or refused (IPv6 only).
  const int read_back = v6only_of(six, six_fd);
  auto situation = Situation::any;
  if (read_back == 0 && before.accepted_by == 0U) situation = Situation::dual_stack;
  if (read_back == 1 && before.refused == ECONNREFUSED) situation = Situation::v6_only;

  auto observation = lab.observe(answer, {Evidence::listening}, situation);
  observation.fact("bindv6only", bindv6only)
      .fact("ipv6_v6only", std::to_string(read_back))
      .fact_text("ipv4_client_before_second", before.text);
  if (after) observation.fact_text("ipv4_client_after_second", after->text);
  observation.fact("sockets", lab.shown_sockets_json());
  return observation;
}

// An IPv4 server listens on 0.0.0.0:P; then an IPv6 server with IPV6_V6ONLY=0 tries [::]:P. The
// IPv6 server's last call answers.
Observation ipv4_then_dual_stack(Lab& lab) {
  const auto bindv6only = read_bindv6only(lab);
  if (auto why = ipv6_missing(lab)) {
    auto skipped = lab.skip("bind", *why);
    skipped.fact("bindv6only", bindv6only);
    return skipped;
  }
  const auto ipv6_any = lab.address("::");
  const auto ipv4_any = lab.wildcard();

  auto four = lab.actor("IPv4 server", Role::server);
  const int four_fd = four.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  four.must("bind", ::bind(four_fd, ipv4_any.raw(), ipv4_any.raw_length()), ipv4_any);
  four.must("listen", ::listen(four_fd, 8));
  lab.pause("the IPv4 server listens: ss -tanl sport = :" + std::to_string(lab.port()));

  auto six = lab.actor("IPv6 server", Role::server);
  const int six_fd = six.must("socket", ::socket(AF_INET6, SOCK_STREAM, 0));
  const int dual_stack = 0;
  six.must("setsockopt", ::setsockopt(six_fd, IPPROTO_IPV6, IPV6_V6ONLY, &dual_stack, sizeof dual_stack),
           "IPV6_V6ONLY=0");
  if (six.call("bind", ::bind(six_fd, ipv6_any.raw(), ipv6_any.raw_length()), ipv6_any) == 0) {
    six.call("listen", ::listen(six_fd, 8));
  }
  const Event answer = lab.events().back();  // the IPv6 server's listen(), or its refused bind()
  lab.show_sockets("the kernel's sockets for the port:");
  std::optional<Landing> after;
  if (answer.ok()) after = ipv4_client(lab, {{&four, four_fd}, {&six, six_fd}});

  const int read_back = v6only_of(six, six_fd);
  const auto situation = read_back == 0 ? Situation::dual_stack : Situation::v6_only;
  auto observation = lab.observe(answer, {Evidence::listening}, situation);
  observation.fact("bindv6only", bindv6only).fact("ipv6_v6only", std::to_string(read_back));
  if (after) observation.fact_text("ipv4_client_after_second", after->text);
  observation.fact("sockets", lab.shown_sockets_json());
  return observation;
}

Observation dual_stack_v6only_0_then_v4(Lab& lab) {
  return ipv6_then_ipv4(lab, 0);
}

Observation dual_stack_v6only_1_then_v4(Lab& lab) {
  return ipv6_then_ipv4(lab, 1);
}

// ---- The claims, and the explanations the observed outcome chooses from ---------------------

const std::string kIpv6Manual = "ipv6(7), IPV6_V6ONLY";

const Experiment kExperiment{
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
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::dual_stack,
                         "The IPv6 socket read back IPV6_V6ONLY=0 and the IPv4 client above was accepted by it, its "
                         "address shown in IPv4-mapped form (::ffff:127.0.0.1): one socket serves both families. "
                         "For bind() the kernel therefore treats [::]:P as covering 0.0.0.0:P too, and a second "
                         "IPv4 wildcard on the port overlaps with it just as a second 0.0.0.0:P would."},
                        {EADDRINUSE, Situation::any,
                         "The IPv4 bind was refused; the socket table above shows what held the port."},
                        {kOk, Situation::any,
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
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::v6_only,
                         "The IPv6 socket read back IPV6_V6ONLY=1, and an IPv4 client to the port was refused "
                         "while it was alone: it does not serve IPv4 at all. The IPv4 port number was therefore "
                         "free, and the IPv4 server got it; the last accept above shows which server an IPv4 "
                         "client reaches now. This is how servers that want separate IPv4 and IPv6 "
                         "sockets on one port are set up."},
                        {kOk, Situation::any,
                         "Both servers hold the port, one per family; the accept lines above show who takes IPv4."},
                        {EADDRINUSE, Situation::any,
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
                .claimed = EADDRINUSE,
                .said = Said::inference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::dual_stack,
                         "The new IPv6 socket has IPV6_V6ONLY=0, so it asks for [::]:P and 0.0.0.0:P at once, and "
                         "0.0.0.0:P is taken. This is the usual surprise when an IPv4-only service already runs on "
                         "a port and a dual-stack server starts: the error names an IPv6 bind, the holder is IPv4."},
                        {EADDRINUSE, Situation::any,
                         "The IPv6 bind was refused; the socket table above shows what held the port."},
                        {kOk, Situation::any,
                         "The dual-stack socket bound although an IPv4 wildcard holds the port: this kernel checks "
                         "the IPv4 side of a dual-stack socket differently from what ipv6(7) describes."},
                    },
                .run = ipv4_then_dual_stack,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
