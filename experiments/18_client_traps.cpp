// 18-client-traps: Client traps: bind before connect, port ranges, one option name.
//
// Shows: a client that calls bind() with port 0 before connect() holds a local port per socket,
// whatever the destination, so it runs out of ports sooner than connect() alone, which may use
// one port once per destination; IP_BIND_ADDRESS_NO_PORT gives that sharing back to a bound
// client. IP_LOCAL_PORT_RANGE (Linux 6.3) gives one socket a range of its own. With a range of
// one port, a second bind(port 0) of an SO_REUSEADDR socket fails unless
// net.ipv4.ip_autobind_reuse = 1. And SO_REUSEADDR | SO_REUSEPORT written as one option name is
// 2 | 15 = 15 on Linux: it sets SO_REUSEPORT only, as getsockopt() shows.
//
// Every step but the last runs in a private user + network namespace with a tiny port range, so
// the counts are small and the host's settings are never touched.
//
// Sources: IP_BIND_ADDRESS_NO_PORT(2const) and IP_LOCAL_PORT_RANGE(2const) (ip(7)); the
// kernel's ip-sysctl documentation (ip_autobind_reuse); pmacct #517 and baseplate.py #350 (the
// OR'd option name). Lesson: lessons/18-client-traps.md
//
// Usage: build/default/bin/18-client-traps [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "portreuse/lab.hpp"

// glibc 2.36 does not name it yet; the number is the kernel's (include/uapi/linux/in.h, 6.3).
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::Millis;

// Eight ports: few enough to run out in milliseconds. Even, because the kernel walks a range two
// ports at a time and rounds an odd count down (lesson 13).
constexpr int kRangeSize = 8;
// Two servers: connect() may use one local port once per destination. More attempts than ports
// times servers, so that a kernel which hands out more is seen doing it.
constexpr int kMostConnections = 2 * kRangeSize + 2;

// The first port of a range of `size` ports that holds neither server port.
int range_start(std::uint16_t first, std::uint16_t second, int size) {
  for (const int start : {40000, 45000, 50000}) {
    const auto inside = [&](std::uint16_t port) { return port >= start && port < start + size; };
    if (!inside(first) && !inside(second)) return start;
  }
  return 55000;  // not reached: two ports cannot lie in three ranges that do not overlap
}

std::string range_text(int low, int high) {
  return std::to_string(low) + " " + std::to_string(high);
}

// ---- What the namespace reported -------------------------------------------------------------

// The port a connect() left from, as the client recorded it: "127.0.0.1:P from 127.0.0.1:L".
std::optional<std::uint16_t> from_port(const Event& connect) {
  const auto from = connect.detail.rfind(" from ");
  if (from == std::string::npos) return std::nullopt;
  const auto local = Endpoint::parse_with_port(connect.detail.substr(from + 6));
  return local ? std::optional(local->port()) : std::nullopt;
}

// One client loop as its calls came back from the namespace: the connections made (and from which
// local ports) until the first bind() or connect() that failed, and what came after it.
struct Tally {
  int connections = 0;
  std::vector<std::uint16_t> ports;  // in the order the connections were made
  std::optional<Event> refused;      // the bind() or connect() that ended the loop
  std::optional<Event> after;        // the first connect() after it (a socket without the option)
  std::optional<Event> broken;       // a call the scenario needed that failed instead

  [[nodiscard]] std::size_t distinct_ports() const { return std::set(ports.begin(), ports.end()).size(); }
};

Tally tally(const Lab& lab, pid_t pid) {
  Tally counted;
  for (const auto& event : lab.events()) {
    if (event.pid != pid || event.call == Call::note || event.call == Call::exited) continue;
    const bool answers = event.role == Role::client && (event.call == Call::bind || event.call == Call::connect);
    if (!answers) {
      if (!event.ok() && !counted.broken) counted.broken = event;
      continue;
    }
    if (counted.refused) {
      if (event.call == Call::connect && !counted.after) counted.after = event;
    } else if (!event.ok()) {
      counted.refused = event;
    } else if (event.call == Call::connect) {
      ++counted.connections;
      if (const auto port = from_port(event)) counted.ports.push_back(*port);
    }
  }
  return counted;
}

std::string ports_json(const std::vector<std::uint16_t>& ports) {
  std::string text = "[";
  for (const auto port : ports) text += (text.size() > 1 ? "," : "") + std::to_string(port);
  return text + "]";
}

// Where this user may not create namespaces (some containers, max_user_namespaces = 0) the step
// cannot run here: a skip that says why, not a failure.
std::optional<Observation> namespace_refused(Lab& lab, Process& inside, CallName answer) {
  const auto unshared = inside.wait_for("unshare");
  if (!unshared || unshared->ok()) return std::nullopt;
  inside.reap();
  const int error = unshared->error;
  if (error != EPERM && error != EACCES && error != ENOSPC && error != EUSERS && error != EINVAL && error != ENOSYS) {
    return lab.could_not_run("no private network namespace", *unshared);
  }
  return lab.skip(answer, "unshare(CLONE_NEWUSER | CLONE_NEWNET) returned " +
                              portreuse::describe_outcome(portreuse::make_error(error)) +
                              ": this user may not create namespaces here (see /proc/sys/user/"
                              "max_user_namespaces, or a container's seccomp profile)");
}

// The namespace's own set-up is lesson 13's: recorded as evidence, not narrated. What the
// namespace then reads back from its sysctls is.
void enter_quietly(Trace& t, const std::vector<std::pair<std::string, std::string>>& sysctls) {
  auto setup = t.alongside(t.actor(), Role::other);
  setup.quiet();
  enter_private_network(setup, sysctls);
  for (const auto& [name, value] : sysctls) {
    t.note("inside: " + name.substr(name.rfind('.') + 1) + " = " + sysctl_value(name).value_or("(unreadable)"));
  }
}

// ---- Running out of local ports: three ways to open the same connections -------------------

enum class Way { connect_only, bind_first, bind_no_port };

// In a namespace of its own with a range of kRangeSize ports, two servers listen on 127.0.0.1, and
// a client opens connections to them in turn, keeping every one open, until a call fails.
Process open_until_refused(Lab& lab, Way way, const std::string& range, const Endpoint& first, const Endpoint& second) {
  return lab.spawn(
      "namespace", Role::other,
      [&](Trace& t) {
        enter_quietly(t, {{"net.ipv4.ip_local_port_range", range}});
        auto server = t.alongside("server", Role::server);
        server.quiet();
        const int first_listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        server.must("bind", ::bind(first_listener, first.raw(), first.raw_length()), first);
        server.must("listen", ::listen(first_listener, kMostConnections));
        const int second_listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        server.must("bind", ::bind(second_listener, second.raw(), second.raw_length()), second);
        server.must("listen", ::listen(second_listener, kMostConnections));

        auto client = t.alongside("client", Role::client);
        client.quiet();  // every call is evidence; the one that fails is narrated, the totals after it
        const auto any_port = first.with_port(0);  // 127.0.0.1:0, "this address, any port"
        std::set<std::uint16_t> ports;
        int made = 0;
        for (int attempt = 0; attempt < kMostConnections; ++attempt) {
          const bool to_first = attempt % 2 == 0;
          const Endpoint& to = to_first ? first : second;
          const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
          if (way == Way::bind_no_port) {
            const int on = 1;
            client.must("setsockopt", ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on),
                        "IP_BIND_ADDRESS_NO_PORT=1");
          }
          if (way != Way::connect_only) {
            if (client.call("bind", ::bind(fd, any_port.raw(), any_port.raw_length()), any_port) < 0) break;
          }
          const Returned connected = ::connect(fd, to.raw(), to.raw_length());
          const auto local = portreuse::local_endpoint(fd);
          const bool has_port = connected.value == 0 && local && local->port() != 0;
          client.call("connect", connected, to.text() + (has_port ? " from " + local->text() : ""));
          if (connected.value < 0) break;
          server.must("accept", ::accept(to_first ? first_listener : second_listener, nullptr, nullptr));
          ++made;
          if (has_port) ports.insert(local->port());
        }
        t.note(std::to_string(made) + " connections were open, from " + std::to_string(ports.size()) +
               " different local ports");
      },
      Millis(5000));
}

// One way's loop in a fresh namespace: its tally, or the observation that ends the step early.
struct Loop {
  std::optional<Observation> early;
  Tally counted;
};

Loop run_loop(Lab& lab, Way way, CallName answer, const std::string& range, const Endpoint& first,
              const Endpoint& second) {
  auto inside = open_until_refused(lab, way, range, first, second);
  if (auto refused = namespace_refused(lab, inside, answer)) return {refused, {}};
  inside.reap(Millis(5000));
  auto counted = tally(lab, inside.pid());
  if (counted.broken) return {lab.could_not_run("the scenario did not happen", *counted.broken), counted};
  return {std::nullopt, counted};
}

struct Servers {
  Endpoint first;
  Endpoint second;
  std::string range;
};

// Two servers on 127.0.0.1: the step's port and the one next to it. Inside a namespace of its own
// nothing else holds a port, so the neighbour is free there without asking the kernel. And a range
// of `size` ports that holds neither.
Servers two_servers(const Lab& lab, int size) {
  const auto first = lab.loopback();
  const auto second_port = static_cast<std::uint16_t>(first.port() == 65535 ? 65534 : first.port() + 1);
  const int start = range_start(first.port(), second_port, size);
  return Servers{first, first.with_port(second_port), range_text(start, start + size - 1)};
}

Observation bind_before_connect(Lab& lab) {
  const auto [first, second, range] = two_servers(lab, kRangeSize);
  lab.you("clients connect() alone, to " + first.text() + " and " + second.text() + " in turn, ports " + range);
  const auto alone = run_loop(lab, Way::connect_only, "bind", range, first, second);
  if (alone.early) return *alone.early;
  lab.you("the same clients, but each calls bind(127.0.0.1:0) first; a new namespace");
  const auto bound = run_loop(lab, Way::bind_first, "bind", range, first, second);
  if (bound.early) return *bound.early;

  const auto& plain = alone.counted;
  const auto& early = bound.counted;
  const bool sooner = early.connections > 0 && early.connections < plain.connections;
  std::optional<Event> answer = early.refused;
  if (!answer) {
    if (const auto* last = lab.last(Call::bind, Role::client)) answer = *last;  // never refused
  }
  auto observation = lab.observe(answer, {Evidence::accepted}, sooner ? Situation::ran_out_sooner : Situation::any);
  observation.detail_holds = sooner;
  observation.fact_text("local_port_range", range)
      .fact("range_size", std::to_string(kRangeSize))
      .fact("server_ports", "2")
      .fact("connections_connect_only", std::to_string(plain.connections))
      .fact("local_ports_connect_only", std::to_string(plain.distinct_ports()))
      .fact("connections_bind_first", std::to_string(early.connections))
      .fact("local_ports_bind_first", std::to_string(early.distinct_ports()));
  return observation;
}

Observation bind_address_no_port(Lab& lab) {
  const auto [first, second, range] = two_servers(lab, kRangeSize);
  lab.you("clients set IP_BIND_ADDRESS_NO_PORT=1, bind(127.0.0.1:0), connect() to " + first.text() + " and " +
          second.text() + " in turn, ports " + range);
  const auto deferred = run_loop(lab, Way::bind_no_port, "connect", range, first, second);
  if (deferred.early) return *deferred.early;

  // Every port of the range used once per server: as many connections as connect() alone makes,
  // twice what bind() alone gave in the step before.
  const auto& with = deferred.counted;
  const bool every_port_twice =
      with.connections == 2 * kRangeSize && static_cast<int>(with.distinct_ports()) == kRangeSize;
  std::optional<Event> answer = with.refused;
  if (!answer) {
    if (const auto* last = lab.last(Call::connect, Role::client)) answer = *last;  // never refused
  }
  auto observation = lab.observe(answer, {Evidence::accepted}, every_port_twice ? Situation::shared : Situation::any);
  observation.detail_holds = every_port_twice;
  observation.fact_text("local_port_range", range)
      .fact("range_size", std::to_string(kRangeSize))
      .fact("server_ports", "2")
      .fact("connections_no_port", std::to_string(with.connections))
      .fact("local_ports_no_port", std::to_string(with.distinct_ports()));
  return observation;
}

// ---- IP_LOCAL_PORT_RANGE: one socket's own range -------------------------------------------

// Two ports of the namespace's eight, in the middle, so that neither end of the wide range is
// mistaken for the narrow one.
constexpr int kOwnLow = 2;
constexpr int kOwnHigh = 3;

Observation local_port_range(Lab& lab) {
  const auto to = lab.loopback();
  const int start = range_start(to.port(), to.port(), kRangeSize);
  const auto range = range_text(start, start + kRangeSize - 1);
  const auto own_low = static_cast<std::uint32_t>(start + kOwnLow);
  const auto own_high = static_cast<std::uint32_t>(start + kOwnHigh);
  lab.you("a namespace with ports " + range + "; each client socket asks for " +
          range_text(static_cast<int>(own_low), static_cast<int>(own_high)) + " only");

  auto inside = lab.spawn(
      "namespace", Role::other,
      [&](Trace& t) {
        enter_quietly(t, {{"net.ipv4.ip_local_port_range", range}});
        auto server = t.alongside("server", Role::server);
        server.quiet();
        const int listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        server.must("bind", ::bind(listener, to.raw(), to.raw_length()), to);
        server.must("listen", ::listen(listener, kMostConnections));

        auto client = t.alongside("client", Role::client);
        client.quiet();
        int made = 0;
        for (int attempt = 0; attempt < kRangeSize + 2; ++attempt) {
          const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
          // The high 16 bits are the last port, the low 16 bits the first (host byte order).
          const std::uint32_t own_range = (own_high << 16) | own_low;
          if (client.call("setsockopt", ::setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &own_range, sizeof own_range),
                          "IP_LOCAL_PORT_RANGE=" + std::to_string(own_low) + "-" + std::to_string(own_high)) < 0) {
            return;  // this kernel has no such option (before Linux 6.3): the parent says so
          }
          const Returned connected = ::connect(fd, to.raw(), to.raw_length());
          const auto local = portreuse::local_endpoint(fd);
          const bool has_port = connected.value == 0 && local && local->port() != 0;
          client.call("connect", connected, to.text() + (has_port ? " from " + local->text() : ""));
          if (connected.value < 0) break;
          server.must("accept", ::accept(listener, nullptr, nullptr));
          ++made;
        }
        t.note(std::to_string(made) +
               " connections from the socket's own range; now one socket "
               "without the option:");
        auto other = t.alongside("client", Role::client);  // narrated: its connect() is the contrast
        const int fd = other.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        const Returned connected = ::connect(fd, to.raw(), to.raw_length());
        const auto local = portreuse::local_endpoint(fd);
        const bool has_port = connected.value == 0 && local && local->port() != 0;
        other.call("connect", connected, to.text() + (has_port ? " from " + local->text() : ""));
      },
      Millis(5000));
  if (auto refused = namespace_refused(lab, inside, "connect")) return *refused;
  inside.reap(Millis(5000));

  // The option itself: a kernel without it says ENOPROTOOPT, which is a reason to skip.
  for (const auto& event : lab.events()) {
    if (event.pid != inside.pid() || event.call != Call::setsockopt || event.ok()) continue;
    if (event.error == ENOPROTOOPT) {
      return lab.skip("connect",
                      "setsockopt(IP_LOCAL_PORT_RANGE) returned ENOPROTOOPT: this kernel has no "
                      "per-socket port range (Linux 6.3 and later have it)");
    }
    return lab.could_not_run("the option could not be set", event);
  }
  const auto counted = tally(lab, inside.pid());
  if (counted.broken) return lab.could_not_run("the scenario did not happen", *counted.broken);
  bool all_inside = counted.connections > 0 && static_cast<int>(counted.ports.size()) == counted.connections;
  for (const auto port : counted.ports) all_inside = all_inside && port >= own_low && port <= own_high;
  const bool others_still_connect = counted.after && counted.after->ok();
  const bool holds =
      all_inside && others_still_connect && counted.connections == static_cast<int>(own_high - own_low + 1);

  std::optional<Event> answer = counted.refused;
  if (!answer) {
    if (const auto* last = lab.last(Call::connect, Role::client)) answer = *last;
  }
  auto observation = lab.observe(answer, {Evidence::accepted}, holds ? Situation::inside_own_range : Situation::any);
  observation.detail_holds = holds;
  observation.fact_text("local_port_range", range)
      .fact_text("own_range", range_text(static_cast<int>(own_low), static_cast<int>(own_high)))
      .fact("connections_own_range", std::to_string(counted.connections))
      .fact("local_ports_own_range", ports_json(counted.ports))
      .fact("without_option_connected", others_still_connect ? "true" : "false");
  if (counted.after) {
    if (const auto port = from_port(*counted.after)) observation.fact("without_option_port", std::to_string(*port));
  }
  return observation;
}

// ---- ip_autobind_reuse: bind(port 0) when every port is taken ------------------------------

// A range of one port, two clients with SO_REUSEADDR that each bind(127.0.0.1:0) and connect to a
// server of their own. The second client's bind() answers.
Observation autobind_reuse(Lab& lab, int autobind_reuse) {
  const auto servers = two_servers(lab, 1);
  const Endpoint& first = servers.first;  // named, not a structured binding: the lambda captures them
  const Endpoint& second = servers.second;
  const std::string& range = servers.range;
  const auto only_port = static_cast<std::uint16_t>(std::stoi(range));
  lab.you("a namespace whose range is one port (" + range + "), ip_autobind_reuse = " + std::to_string(autobind_reuse));

  auto inside = lab.spawn(
      "namespace", Role::other,
      [&](Trace& t) {
        enter_quietly(t, {{"net.ipv4.ip_local_port_range", range},
                          {"net.ipv4.ip_autobind_reuse", std::to_string(autobind_reuse)}});
        auto server = t.alongside("server", Role::server);
        server.quiet();
        const int first_listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        server.must("bind", ::bind(first_listener, first.raw(), first.raw_length()), first);
        server.must("listen", ::listen(first_listener, 4));
        const int second_listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        server.must("bind", ::bind(second_listener, second.raw(), second.raw_length()), second);
        server.must("listen", ::listen(second_listener, 4));

        const auto any_port = first.with_port(0);
        const int on = 1;
        auto a = t.alongside("client A", Role::client);
        const int a_fd = a.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        a.must("setsockopt", ::setsockopt(a_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
        a.must("bind", ::bind(a_fd, any_port.raw(), any_port.raw_length()), any_port);
        const Returned a_connected = ::connect(a_fd, first.raw(), first.raw_length());
        const auto a_local = portreuse::local_endpoint(a_fd);
        a.must("connect", a_connected, first.text() + (a_local ? " from " + a_local->text() : ""));

        auto b = t.alongside("client B", Role::client);
        const int b_fd = b.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
        b.must("setsockopt", ::setsockopt(b_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
        if (b.call("bind", ::bind(b_fd, any_port.raw(), any_port.raw_length()), any_port) < 0) return;
        // Bound: to another destination, the shared port makes a four-tuple of its own.
        const Returned b_connected = ::connect(b_fd, second.raw(), second.raw_length());
        const auto b_local = portreuse::local_endpoint(b_fd);
        b.call("connect", b_connected,
               second.text() + (b_connected.value == 0 && b_local ? " from " + b_local->text() : ""));
      },
      Millis(5000));
  if (auto refused = namespace_refused(lab, inside, "bind")) return *refused;
  inside.reap(Millis(5000));

  // The first client's bind() and connect() are the scenario; the second client's bind() answers.
  std::vector<Event> binds;
  std::vector<Event> connects;
  std::optional<Event> broken;
  for (const auto& event : lab.events()) {
    if (event.pid != inside.pid() || event.role != Role::client) continue;
    if (event.call == Call::bind) binds.push_back(event);
    if (event.call == Call::connect) connects.push_back(event);
  }
  if (binds.size() < 2 || connects.empty() || !connects.front().ok()) {
    return lab.could_not_run("the first client did not take the range's port");
  }
  const auto a_port = from_port(connects.front());
  if (a_port != only_port) return lab.could_not_run("the first client did not take the range's one port");
  std::optional<std::uint16_t> b_port;
  if (connects.size() > 1 && connects[1].ok()) b_port = from_port(connects[1]);
  const bool shared = b_port && b_port == a_port;

  auto observation = lab.observe(binds[1], {Evidence::listening}, shared ? Situation::shared : Situation::any);
  if (binds[1].ok()) observation.detail_holds = shared;
  observation.fact_text("local_port_range", range)
      .fact("ip_autobind_reuse", std::to_string(autobind_reuse))
      .fact("first_client_port", std::to_string(*a_port))
      .fact("second_client_port", b_port ? std::to_string(*b_port) : "null");
  return observation;
}

Observation autobind_reuse_0(Lab& lab) {
  return autobind_reuse(lab, 0);
}

Observation autobind_reuse_1(Lab& lab) {
  return autobind_reuse(lab, 1);
}

// ---- One option name for two options ---------------------------------------------------------

Observation or_ed_option_name(Lab& lab) {
  auto server = lab.actor("server", Role::server);
  const int fd = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  const int on = 1;
  // The trap: two option names OR'd into one, as if they were flags. Each name is a number.
  const auto name = std::to_string(SO_REUSEADDR) + " | " + std::to_string(SO_REUSEPORT) + " = " +
                    std::to_string(SO_REUSEADDR | SO_REUSEPORT);
  server.call("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT, &on, sizeof on),
              "SO_REUSEADDR | SO_REUSEPORT (" + name + ") = 1");
  const Event answer = lab.events().back();

  // What the socket really has: both options read back, one at a time.
  int reuse_address = -1;
  socklen_t length = sizeof reuse_address;
  server.must("getsockopt", ::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse_address, &length), "SO_REUSEADDR");
  int reuse_port = -1;
  length = sizeof reuse_port;
  server.must("getsockopt", ::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuse_port, &length), "SO_REUSEPORT");
  server.note("reads back SO_REUSEADDR=" + std::to_string(reuse_address) +
              ", SO_REUSEPORT=" + std::to_string(reuse_port));

  const bool only_port = reuse_address == 0 && reuse_port == 1;
  auto observation = lab.observe(answer, {}, only_port ? Situation::only_reuseport : Situation::any);
  if (answer.ok()) observation.detail_holds = only_port;
  observation.fact("option_name", std::to_string(SO_REUSEADDR | SO_REUSEPORT))
      .fact("so_reuseaddr", std::to_string(reuse_address))
      .fact("so_reuseport", std::to_string(reuse_port));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "Three traps on the client side, where nobody expects 'Address already in use': a bind() before "
        "connect() that uses up the port range, the options that let a client choose its ports without that "
        "cost, and two option names OR'd into one. The port steps run in private network namespaces with "
        "ranges of eight ports or one, so the counts are small and the host is not touched.",
    .steps =
        {
            Step{
                .id = "bind-before-connect",
                .preview = "In a namespace with 8 ports, clients connect to two servers in turn and keep every "
                           "connection: first with connect() alone, then with bind(127.0.0.1:0) before each "
                           "connect().",
                .claim = "A client that binds to port 0 before connect() (to choose its source address) runs out of "
                         "local ports sooner than one that lets connect() choose: bind() reserves a port for the "
                         "socket before the destination is known.",
                .source = "IP_BIND_ADDRESS_NO_PORT(2const), ip(7): bind() with port 0 reserves an ephemeral port",
                .claimed = EADDRINUSE,
                .said = Said::inference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::ran_out_sooner,
                         "connect() alone chose each local port knowing the destination: inet_hash_connect() walks "
                         "the range and takes a port as soon as the four-tuple (local address and port, server "
                         "address and port) is unused, so one port could serve both servers. bind() with port 0 "
                         "runs inet_csk_get_port(), which must pick a port before any destination is known, and "
                         "only hands out a port that no other socket holds: each bound socket took a port of its "
                         "own, one connection per port, until bind() failed with EADDRINUSE. The same client and "
                         "servers, fewer connections (both counts are above and in the step's facts). With the "
                         "host's range of 28,232 ports the wall is farther away, but it is the same wall."},
                        {EADDRINUSE, Situation::any,
                         "bind(port 0) ran out of ports, but not sooner than connect() alone: compare the two counts "
                         "in the step's facts."},
                        {kOk, Situation::any,
                         "bind(port 0) never failed within the attempts made: this kernel handed out more ports "
                         "than the range holds, or shared them between bound sockets."},
                    },
                .run = bind_before_connect,
            },
            Step{
                .id = "bind-address-no-port",
                .preview = "In a namespace with 8 ports, clients set IP_BIND_ADDRESS_NO_PORT=1, bind(127.0.0.1:0) "
                           "and connect to two servers in turn, keeping every connection.",
                .claim = "With IP_BIND_ADDRESS_NO_PORT, bind() with port 0 fixes only the address; the port is "
                         "chosen at connect() and shared as long as the four-tuple is unique, so a bound client "
                         "can use every port once per destination, as connect() alone does.",
                .source = "IP_BIND_ADDRESS_NO_PORT(2const), ip(7) (Linux 4.2)",
                .claimed = EADDRNOTAVAIL,
                .explanations =
                    {
                        {EADDRNOTAVAIL, Situation::shared,
                         "With the option, __inet_bind() stored the address and left the port at 0, so bind() "
                         "reserved nothing. connect() then chose the port with the destination in hand "
                         "(inet_hash_connect()), as it does without bind(): every port of the range served both "
                         "servers, twice as many connections as ports, where bind() alone gives one per port (step "
                         "bind-before-connect). The range ran out only when every port had a connection to each "
                         "server, and then connect() failed with EADDRNOTAVAIL, 'Cannot assign requested address', "
                         "the error of lesson 13, not bind()'s EADDRINUSE."},
                        {EADDRNOTAVAIL, Situation::any,
                         "connect() ran out of ports before every port had served both servers: see the counts in "
                         "the step's facts."},
                        {EADDRINUSE, Situation::any,
                         "bind() still failed with EADDRINUSE: the option did not keep it from reserving a port. "
                         "Check that it was set before bind(); the step's calls show the order."},
                    },
                .run = bind_address_no_port,
            },
            Step{
                .id = "local-port-range",
                .preview = "A namespace with 8 ports; every client socket sets IP_LOCAL_PORT_RANGE to two of them "
                           "and connects to one server until connect() fails; then one socket without it.",
                .claim = "IP_LOCAL_PORT_RANGE gives one socket a port range of its own, inside the system's range: "
                         "connect() takes the port from it and fails when it is used up, while other sockets still "
                         "get ports.",
                .source = "IP_LOCAL_PORT_RANGE(2const), ip(7) (Linux 6.3)",
                .claimed = EADDRNOTAVAIL,
                .explanations =
                    {
                        {EADDRNOTAVAIL, Situation::inside_own_range,
                         "The kernel took each socket's range into account where it picks a port: "
                         "inet_sk_get_local_port_range() narrows the namespace's range to the socket's own, and "
                         "inet_hash_connect() walks only that. Both connections left from the socket's two ports, "
                         "the third socket found them taken towards this server and got EADDRNOTAVAIL, while a "
                         "socket without the option still connected from another port of the namespace's range. "
                         "It is the per-socket form of ip_local_port_range: a process that shares an address with "
                         "others can keep to its slice of ports without bind() and its cost."},
                        {EADDRNOTAVAIL, Situation::any,
                         "connect() ran out of ports, but not as the socket's own range predicts: see which ports "
                         "the connections used in the step's facts."},
                        {kOk, Situation::any,
                         "connect() never failed: the option did not narrow the range on this kernel."},
                    },
                .run = local_port_range,
            },
            Step{
                .id = "autobind-reuse-0",
                .preview = "A range of one port, ip_autobind_reuse = 0: client A (SO_REUSEADDR) binds 127.0.0.1:0 "
                           "and connects; client B (SO_REUSEADDR) binds 127.0.0.1:0 too.",
                .claim = "With net.ipv4.ip_autobind_reuse = 0, the default, bind() with port 0 fails with EADDRINUSE "
                         "when every port of the range is held, even when every socket set SO_REUSEADDR.",
                .source = "Linux ip-sysctl documentation (ip_autobind_reuse); selftest reuseaddr_ports_exhausted.c",
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::any,
                         "For bind() with port 0, inet_csk_get_port() searches the range for a port nobody holds "
                         "(inet_csk_find_open_port()), and in that search SO_REUSEADDR on both sockets does not "
                         "count: sharing is left to the caller who names a port. The one port was client A's, so "
                         "client B got EADDRINUSE, although its four-tuple towards the second server would have "
                         "been unique."},
                        {kOk, Situation::shared,
                         "client B was given client A's port: this kernel lets bind(port 0) share a port even with "
                         "ip_autobind_reuse = 0."},
                        {kOk, Situation::any, "client B's bind() passed: the range had a free port after all."},
                    },
                .run = autobind_reuse_0,
            },
            Step{
                .id = "autobind-reuse-1",
                .preview = "The same with ip_autobind_reuse = 1: B binds 127.0.0.1:0 with A's port taken, then "
                           "connects to a second server.",
                .claim = "With net.ipv4.ip_autobind_reuse = 1 (Linux 5.8), bind() with port 0 may give an "
                         "SO_REUSEADDR socket a port that other SO_REUSEADDR sockets hold, once no free port is "
                         "left, so the four-tuple space is used as connect() uses it.",
                .source = "Linux ip-sysctl documentation (ip_autobind_reuse); selftest reuseaddr_ports_exhausted.c",
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::shared,
                         "The search for a free port found none, and with ip_autobind_reuse = 1 "
                         "inet_csk_find_open_port() searched again in relaxed mode: a port whose holders all set "
                         "SO_REUSEADDR and do not listen no longer counts as taken. Client B got client A's port "
                         "and connected from it to the second server: two connections, one local port, two "
                         "four-tuples. The documentation warns that the kernel cannot know the destination at "
                         "bind() time; with the same server, B's connect() would fail with EADDRNOTAVAIL "
                         "(lesson 08)."},
                        {kOk, Situation::any,
                         "client B's bind() passed, but it did not share client A's port: see the ports in the "
                         "step's facts."},
                        {EADDRINUSE, Situation::any,
                         "bind() still refused: this kernel has no ip_autobind_reuse (before Linux 5.8), or did "
                         "not let this namespace set it."},
                    },
                .run = autobind_reuse_1,
            },
            Step{
                .id = "or-ed-option-name",
                .preview = "setsockopt(fd, SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT, &on, sizeof on), then "
                           "getsockopt() of each option.",
                .claim = "Written as one option name, SO_REUSEADDR | SO_REUSEPORT is 2 | 15 = 15 on Linux: the call "
                         "succeeds and sets SO_REUSEPORT only, never SO_REUSEADDR.",
                .source = "pmacct #517; baseplate.py #350 (on macOS the combined name fails)",
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::only_reuseport,
                         "setsockopt() takes one option name, a number, not a set of flags. On Linux SO_REUSEADDR is "
                         "2 and SO_REUSEPORT is 15, so the OR is 15, a valid name, and sock_setsockopt() set "
                         "SO_REUSEPORT and nothing else: getsockopt() reads SO_REUSEADDR=0. No error tells the "
                         "author. The server then gets SO_REUSEPORT's rules instead of SO_REUSEADDR's (lesson 09): "
                         "it restarts over its TIME_WAIT only if the old one set SO_REUSEPORT too, and a second "
                         "copy of it may bind the same port and take half the connections. Set each option with a "
                         "call of its own. On macOS the names are 0x4 and 0x200, the OR is no option, and the call "
                         "fails (documented, not observed here)."},
                        {kOk, Situation::any,
                         "setsockopt() passed, but the options read back are not SO_REUSEPORT alone: see the step's "
                         "facts."},
                        {ENOPROTOOPT, Situation::any,
                         "setsockopt() refused the combined name: on this system it is no option at all."},
                        {EINVAL, Situation::any,
                         "setsockopt() refused the combined name with EINVAL: on this system it is no valid option."},
                    },
                .run = or_ed_option_name,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
