// 16-time-wait-accepts: What a TIME_WAIT still accepts.
//
// Shows: a TIME_WAIT is not a dead socket. It still answers segments of its old connection, and
// three of them change it: a new SYN from the same address pair with a higher sequence number
// reopens it (the listener accepts a new connection); an RST whose sequence number is the one it
// waits for ends it at once, so that a plain bind() that failed now passes (unless
// net.ipv4.tcp_rfc1337 = 1); a retransmitted FIN starts its 60 s timer again. And on the client
// side, tcp_tw_reuse decides whether connect() may take over the client's own TIME_WAIT.
//
// Every step runs in a private user and network namespace, where the sysctls can be set and a raw
// socket may be opened without root on the host. The RST and the FIN are written by hand: an IPv4
// and a TCP header, sent through socket(AF_INET, SOCK_RAW, IPPROTO_RAW); their sequence numbers
// are read from the connection's own segments, captured on the namespace's lo.
//
// Beyond the articles: RFC 1122 4.2.2.13 (reopening a TIME_WAIT), RFC 1337 ("TIME-WAIT
// assassination"), V. Bernat's "Coping with the TCP TIME-WAIT state on busy Linux servers"
// (tcp_tw_reuse). Lesson: lessons/16-time-wait-accepts.md
//
// Usage: 16-time-wait-accepts [--port P] [--json] [--no-color] [--step] [--ladder]
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#endif

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::Millis;
using Clock = std::chrono::steady_clock;

// ---- The wire inside the namespace: what the kernel sent, and a segment of our own ----------

// One TCP segment as it arrived on lo: the numbers a crafted segment has to match.
struct Seen {
  std::uint16_t from_port = 0;
  std::uint16_t to_port = 0;
  std::uint8_t flags = 0;  // TH_FIN, TH_SYN, TH_RST, TH_ACK ... as in the header's 14th byte
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint32_t length = 0;  // data bytes
};

// An AF_PACKET socket for IPv4 on lo. SOCK_DGRAM: the kernel removes the link header, so each
// message starts with the IP header. A protocol socket gets each packet once, as it arrives.
// Protocol 0 at socket(): it hears nothing until bind() names lo and IPv4 (created with a
// protocol it would first listen everywhere, and bind() would wait for RCU to unhook it).
int open_capture(Trace& t) {
#ifdef __linux__
  const int fd = t.must("socket", ::socket(AF_PACKET, SOCK_DGRAM, 0), "AF_PACKET, SOCK_DGRAM");
  sockaddr_ll lo{};
  lo.sll_family = AF_PACKET;
  lo.sll_protocol = htons(ETH_P_IP);
  lo.sll_ifindex = static_cast<int>(::if_nametoindex("lo"));
  t.must("bind", ::bind(fd, reinterpret_cast<const sockaddr*>(&lo), sizeof lo), "lo, ETH_P_IP");
  return fd;
#else
  return t.must("socket", Returned((errno = ENOSYS, -1)), "AF_PACKET is Linux's");
#endif
}

// Reads what the capture holds until a segment of `port` matches `wanted` (or the deadline).
template <typename Wanted>
std::optional<Seen> wait_for_segment(int capture, std::uint16_t port, Wanted wanted, Millis deadline = Millis(500)) {
  const auto until = Clock::now() + deadline;
  for (;;) {
    std::array<unsigned char, 256> packet{};
    const auto got = ::recv(capture, packet.data(), packet.size(), MSG_DONTWAIT);
    if (got >= 40) {
      const std::size_t ip_length = static_cast<std::size_t>(packet[0] & 0x0fU) * 4U;
      const auto* tcp = packet.data() + ip_length;
      const auto read16 = [](const unsigned char* at) { return static_cast<std::uint16_t>(at[0] << 8 | at[1]); };
      const auto read32 = [&](const unsigned char* at) {
        return static_cast<std::uint32_t>(read16(at)) << 16 | read16(at + 2);
      };
      Seen seen;
      seen.from_port = read16(tcp);
      seen.to_port = read16(tcp + 2);
      seen.seq = read32(tcp + 4);
      seen.ack = read32(tcp + 8);
      seen.flags = tcp[13];
      seen.length = static_cast<std::uint32_t>(read16(packet.data() + 2) - ip_length - (tcp[12] >> 4) * 4U);
      const bool whole = static_cast<std::size_t>(got) >= ip_length + 20;  // the whole TCP header arrived
      const bool ours = whole && packet[9] == IPPROTO_TCP && (seen.from_port == port || seen.to_port == port);
      if (ours && wanted(seen)) return seen;
      continue;
    }
    if (Clock::now() >= until) return std::nullopt;
    pollfd ready{capture, POLLIN, 0};
    ::poll(&ready, 1, 10);
  }
}

// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
// words. `sum` carries a part summed before (the pseudo-header).
std::uint32_t add_words(const void* data, std::size_t length, std::uint32_t sum = 0) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t at = 0; at + 1 < length; at += 2) sum += static_cast<std::uint32_t>(bytes[at] << 8 | bytes[at + 1]);
  if (length % 2 != 0) sum += static_cast<std::uint32_t>(bytes[length - 1] << 8);
  return sum;
}
std::uint16_t checksum(std::uint32_t sum) {
  while ((sum >> 16) != 0) sum = (sum & 0xffffU) + (sum >> 16);
  return htons(static_cast<std::uint16_t>(~sum & 0xffffU));
}

// A TCP segment with an IPv4 header and no options or data: what the raw socket sends.
struct Segment {
  iphdr ip;
  tcphdr tcp;
};

// From 127.0.0.1:from_port to 127.0.0.1:to_port, as if the client's kernel had sent it.
Segment craft(std::uint16_t from_port, std::uint16_t to_port, std::uint32_t seq, std::uint32_t ack,
              std::uint8_t flags) {
  Segment segment{};
  segment.ip.version = 4;
  segment.ip.ihl = 5;
  segment.ip.ttl = 64;
  segment.ip.protocol = IPPROTO_TCP;
  segment.ip.saddr = htonl(INADDR_LOOPBACK);
  segment.ip.daddr = htonl(INADDR_LOOPBACK);
  // tot_len, id and the IP checksum: the kernel fills them in for IPPROTO_RAW (raw(7)).
  segment.tcp.th_sport = htons(from_port);
  segment.tcp.th_dport = htons(to_port);
  segment.tcp.th_seq = htonl(seq);
  segment.tcp.th_ack = htonl(ack);
  segment.tcp.th_off = 5;  // 20 bytes: no options, so no timestamp for PAWS to judge
  segment.tcp.th_flags = flags;
  segment.tcp.th_win = htons(0);
  // The TCP checksum covers a pseudo-header (both addresses, the protocol, the TCP length) and
  // the TCP header; the kernel drops a segment whose sum is wrong before any state sees it.
  const struct {
    std::uint32_t source, destination;
    std::uint8_t zero, protocol;
    std::uint16_t length;
  } pseudo{segment.ip.saddr, segment.ip.daddr, 0, IPPROTO_TCP, htons(sizeof segment.tcp)};
  segment.tcp.th_sum = checksum(add_words(&segment.tcp, sizeof segment.tcp, add_words(&pseudo, 12)));
  return segment;
}

std::string flags_text(std::uint8_t flags) {
  std::string text;
  for (const auto& [bit, word] :
       {std::pair{TH_SYN, "SYN"}, std::pair{TH_FIN, "FIN"}, std::pair{TH_RST, "RST"}, std::pair{TH_ACK, "ACK"}}) {
    if ((flags & bit) != 0) text += (text.empty() ? "" : " ") + std::string(word);
  }
  return text;
}

// Sends the crafted segment from a raw socket and records sendto's result: its length in bytes.
void send_crafted(Trace& t, const Endpoint& to, const Segment& segment) {
  const int raw = t.must("socket", ::socket(AF_INET, SOCK_RAW, IPPROTO_RAW), "AF_INET, SOCK_RAW, IPPROTO_RAW");
  const std::string what =
      flags_text(segment.tcp.th_flags) + " from :" + std::to_string(ntohs(segment.tcp.th_sport)) + " seq " +
      std::to_string(ntohl(segment.tcp.th_seq)) +
      ((segment.tcp.th_flags & TH_ACK) != 0 ? " ack " + std::to_string(ntohl(segment.tcp.th_ack)) : std::string());
  t.call("sendto", ::sendto(raw, &segment, sizeof segment, 0, to.raw(), to.raw_length()), to.text() + " " + what);
  t.must("close", ::close(raw));
}

// ---- A server-side TIME_WAIT, made in the namespace ------------------------------------------

struct ServerTimeWait {
  int listener = -1;
  std::uint16_t client_port = 0;
  std::optional<Seen> client_fin;  // the client's FIN: the last segment the TIME_WAIT took in
};

// The server accepts one client and closes first, as in experiment 02; the client reads the end
// of stream and closes too. The server's end is then in TIME_WAIT, on the server's port.
ServerTimeWait make_server_time_wait(Trace& t, const Endpoint& to, int capture) {
  auto server = t.alongside("server", Role::server);
  auto client = t.alongside("client", Role::client);
  ServerTimeWait made;
  made.listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  server.must("bind", ::bind(made.listener, to.raw(), to.raw_length()), to);
  server.must("listen", ::listen(made.listener, 8));
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  const int on = 1;  // the second client of syn-reopens-time-wait binds this port again
  client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  const auto local = portreuse::local_endpoint(fd);
  made.client_port = local ? local->port() : 0;
  const int connection = server.must("accept", ::accept(made.listener, nullptr, nullptr));
  server.must("close", ::close(connection));  // the server closes first: the TIME_WAIT is its own
  client.receive_text(fd);                    // 0 bytes: end of stream
  client.must("close", ::close(fd));
  made.client_fin = wait_for_segment(capture, to.port(), [&](const Seen& seen) {
    return seen.from_port == made.client_port && (seen.flags & TH_FIN) != 0;
  });
  if (made.client_fin) {
    t.note("captured the client's FIN: seq " + std::to_string(made.client_fin->seq) + " ack " +
           std::to_string(made.client_fin->ack));
  } else {
    t.note("the client's FIN was not seen on lo");
  }
  return made;
}

// The namespace's sockets with the port at either end, under a caption; "none" when there are none.
void report_port(Trace& t, std::uint16_t port) {
  t.note("the namespace's sockets on port " + std::to_string(port) + ":");
  t.report_sockets(port);
  const auto table = portreuse::read_socket_table();
  if (table && portreuse::involving_port(*table, port).empty()) t.note("  (none)");
}

// Counts the rows the namespace reported between two events of the step (by their index).
int time_wait_rows(const Lab& lab, std::size_t from, std::size_t to) {
  int rows = 0;
  for (std::size_t index = from; index < to && index < lab.events().size(); ++index) {
    const auto& event = lab.events()[index];
    if (event.call == Call::socket_table && event.ok() &&
        event.value == static_cast<long>(portreuse::TcpState::time_wait)) {
      ++rows;
    }
  }
  return rows;
}

// The first failed read of the socket table or its timers between two events (by their index). A
// table that could not be read says nothing about which rows were there: no "row gone" from it.
std::optional<Event> failed_read(const Lab& lab, std::size_t from, std::size_t to) {
  for (std::size_t index = from; index < to && index < lab.events().size(); ++index) {
    const auto& event = lab.events()[index];
    if ((event.call == Call::socket_table || event.call == Call::timer) && !event.ok()) return event;
  }
  return std::nullopt;
}

// The namespace's process ended early: a call it could not go on without failed (its must()
// ended it with status 1), or a signal ended it. What it reported is then not the whole scenario.
bool ended_early(const std::optional<portreuse::ExitStatus>& status) {
  return !status || !status->exited || status->code != 0;
}

// Why the step could not run when the namespace stopped early: its last failed call, the one its
// must() stopped on (an earlier failure may be an outcome the step expects: a refused connect).
Observation stopped_early(Lab& lab) {
  const auto& events = lab.events();
  for (auto index = events.size(); index > 0; --index) {
    const Event event = events[index - 1];  // a copy: could_not_run may read more events first
    if (event.ok() || event.quiet || event.call == Call::note || event.call == Call::exited) continue;
    return lab.could_not_run("the scenario did not happen: the namespace stopped early", event);
  }
  return lab.could_not_run("the scenario did not happen: the namespace stopped early");
}

// The index of the first event of `call` by `role` at or after `from`; events().size() if none.
std::size_t index_of(const Lab& lab, Call call, Role role, std::size_t from = 0) {
  for (std::size_t index = from; index < lab.events().size(); ++index) {
    if (lab.events()[index].call == call && lab.events()[index].role == role) return index;
  }
  return lab.events().size();
}

// Namespaces not permitted here: the step cannot run, and says why.
std::optional<Observation> not_permitted(Lab& lab, Process& inside, CallName call) {
  if (lab.shares_private_network()) return std::nullopt;  // the run's namespace: no unshare of its own
  const auto unshared = inside.wait_for("unshare", Millis(2000));
  if (!unshared || unshared->ok()) return std::nullopt;
  const int error = unshared->error;
  inside.reap();
  return lab.skip(call, "unshare(CLONE_NEWUSER | CLONE_NEWNET) returned " +
                            portreuse::describe_outcome(portreuse::make_error(error)) +
                            ": this user may not create namespaces here (see /proc/sys/user/"
                            "max_user_namespaces, or a container's seccomp profile)");
}

// ---- (a) A SYN reopens a server-side TIME_WAIT -----------------------------------------------

Observation syn_reopens_time_wait(Lab& lab) {
  const auto to = lab.loopback();
  lab.you("a server closes first; then the same client port connects to it again");
  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    const PrivateNetwork network(t, lab, {{"net.ipv4.tcp_timestamps", "1"}});
    const int capture = open_capture(t);
    const auto made = make_server_time_wait(t, to, capture);
    report_port(t, to.port());

    // A new socket binds the old client port (SO_REUSEADDR) and connects: the same four numbers.
    auto client = t.alongside("client again", Role::client);
    auto server = t.alongside("server", Role::server);
    const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    const int on = 1;
    client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    const auto from = to.with_port(made.client_port);
    client.must("bind", ::bind(fd, from.raw(), from.raw_length()), from);
    if (client.call("connect", ::connect(fd, to.raw(), to.raw_length()), to) == 0) {
      server.call("accept", ::accept(made.listener, nullptr, nullptr), "from " + from.text());
    }
    const auto syn = wait_for_segment(capture, to.port(), [&](const Seen& seen) {
      return seen.from_port == made.client_port && (seen.flags & (TH_SYN | TH_ACK)) == TH_SYN;
    });
    if (syn && made.client_fin) {
      // The old connection's last sequence number from the client is its FIN's.
      const auto ahead = static_cast<std::int32_t>(syn->seq - (made.client_fin->seq + 1));
      t.note("the new SYN's seq " + std::to_string(syn->seq) + " is " + std::to_string(ahead) +
             (ahead > 0 ? " past" : " before") + " the old connection's end");
    }
    report_port(t, to.port());
  });
  if (auto skipped = not_permitted(lab, inside, "accept")) return *skipped;
  if (ended_early(inside.reap())) return stopped_early(lab);

  // Before: the rows reported before the second connect; after: the rows after it.
  const std::size_t again = index_of(lab, Call::connect, Role::client, index_of(lab, Call::connect, Role::client) + 1);
  const int before = time_wait_rows(lab, 0, again);
  const int after = time_wait_rows(lab, again, lab.events().size());
  std::optional<Event> accepted;
  for (std::size_t index = again; index < lab.events().size(); ++index) {
    if (lab.events()[index].call == Call::accept && lab.events()[index].role == Role::server)
      accepted = lab.events()[index];
  }
  if (before == 0) return lab.could_not_run("the scenario did not happen: no TIME_WAIT was reported before the SYN");
  if (const auto failed = failed_read(lab, 0, lab.events().size())) {
    return lab.could_not_run("the socket table could not be read", *failed);
  }
  // The connect() passed, so a connection waits in the backlog: an accept() that failed then
  // (EMFILE, ENOMEM) says nothing about the TIME_WAIT.
  if (accepted && !accepted->ok()) return lab.could_not_run("the new connection was not accepted", *accepted);
  auto observation = lab.observe(accepted, {Evidence::accepted, Evidence::server_closed_first, Evidence::table_read},
                                 after == 0 ? Situation::time_wait_reopened : Situation::time_wait_kept);
  observation.fact("time_wait_rows_before", std::to_string(before));
  observation.fact("time_wait_rows_after", std::to_string(after));
  observation.detail_holds = after == 0;
  return observation;
}

// ---- (a) The client's own TIME_WAIT and tcp_tw_reuse ----------------------------------------

// Where the kernel has tcp_tw_reuse_delay (milliseconds), the step sets it short and waits past
// it; older kernels wait a whole second (they compare seconds), so the step waits two there.
constexpr Millis kReuseDelay{50};
Millis reuse_wait() {
  return sysctl_value("net.ipv4.tcp_tw_reuse_delay") ? kReuseDelay + Millis(20) : Millis(2000);
}
constexpr int kWaitingPorts = 4;  // one for each connect that may take a TIME_WAIT over, and spares
constexpr std::array<const char*, 3> kSettings{"0", "1", "2"};

constexpr int kAttempts = 3;  // on a machine too busy to connect "at once" (see below)

// One try; `attempt` picks the range's four ports (a later try's, because the first ones wait).
Observation client_tw_reuse_once(Lab& lab, int attempt, bool& too_busy) {
  // A later try needs a server port of its own too: the last one's accepted connections ended
  // when its namespace process did, the server closing first.
  auto to = lab.loopback();
  if (attempt > 0) {
    auto fresh = lab.fresh_port();
    if (!fresh) return lab.could_not_run("asking the kernel for a free port for another try failed");
    to = to.with_port(*fresh);
  }
  // Four ephemeral ports, none of them the server's, all left in TIME_WAIT by the first clients.
  const int first = 40000 + attempt * kWaitingPorts;
  const int low = (to.port() >= first && to.port() < first + kWaitingPorts) ? first + 10000 : first;
  std::vector<std::pair<std::string, std::string>> sysctls{
      {"net.ipv4.ip_local_port_range", std::to_string(low) + " " + std::to_string(low + kWaitingPorts - 1)}};
  if (sysctl_value("net.ipv4.tcp_tw_reuse_delay")) {
    sysctls.emplace_back("net.ipv4.tcp_tw_reuse_delay", std::to_string(kReuseDelay.count()));
  }
  lab.you(
      "clients close first from four ports; then connect() to the same server again "
      "with tcp_tw_reuse 0, 1 and 2");
  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    const PrivateNetwork network(t, lab, sysctls);
    auto server = t.alongside("server", Role::server);
    auto client = t.alongside("client", Role::client);
    const int listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    server.must("bind", ::bind(listener, to.raw(), to.raw_length()), to);
    server.must("listen", ::listen(listener, 8));
    std::vector<std::uint16_t> waiting;  // the client ports left in TIME_WAIT
    for (int round = 0; round < kWaitingPorts; ++round) {
      const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
      const int on = 1;  // so that bind() may name the port again below
      client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
      client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
      const auto local = portreuse::local_endpoint(fd);
      waiting.push_back(local ? local->port() : 0);
      const int connection = server.must("accept", ::accept(listener, nullptr, nullptr));
      client.must("close", ::close(fd));  // the client closes first: the TIME_WAIT is its own
      server.receive_text(connection);    // 0 bytes: the client's FIN came first
      server.must("close", ::close(connection));
    }
    report_port(t, to.port());

    // Every port of the range waits: connect() without bind() must take a TIME_WAIT over or fail.
    const auto connect_ephemeral = [&](const char* setting) {
      network.set("net.ipv4.tcp_tw_reuse", setting);
      const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
      if (client.call("connect", ::connect(fd, to.raw(), to.raw_length()), to) == 0) {
        const auto local = portreuse::local_endpoint(fd);
        const auto port = local ? local->port() : 0;
        t.note("took over the TIME_WAIT of port " + std::to_string(port));
        std::erase(waiting, port);
        server.must("accept", ::accept(listener, nullptr, nullptr));
        return;  // the connection stays open, so the port stays taken (closed when the step ends)
      }
      client.must("close", ::close(fd));
    };
    t.note("at once:");
    for (const auto* setting : kSettings) connect_ephemeral(setting);
    std::this_thread::sleep_for(reuse_wait());
    t.note("after " + std::to_string(reuse_wait().count()) + " ms, past tcp_tw_reuse_delay:");
    for (const auto* setting : kSettings) connect_ephemeral(setting);

    // A port still in TIME_WAIT, named with bind(): the other road to the same four numbers.
    if (waiting.empty()) {  // every connect above took one over: the report below says why
      t.note("no port is left in TIME_WAIT to bind");
      return;
    }
    network.set("net.ipv4.tcp_tw_reuse", "0");
    const auto from = to.with_port(waiting.front());
    const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    const int on = 1;
    client.must("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    client.must("bind", ::bind(fd, from.raw(), from.raw_length()), from);
    if (client.call("connect", ::connect(fd, to.raw(), to.raw_length()), to) == 0) {
      server.must("close", ::close(server.must("accept", ::accept(listener, nullptr, nullptr))));
    }
    client.must("close", ::close(fd));
  });
  if (auto skipped = not_permitted(lab, inside, "connect")) return *skipped;
  // The connects in order: the clients that made the TIME_WAITs, then the grid.
  const auto first_connect = inside.wait_for("connect");
  for (int round = 1; round < kWaitingPorts; ++round) inside.wait_for("connect");
  std::array<std::optional<Event>, 7> cells;
  for (auto& cell : cells) cell = inside.wait_for("connect", reuse_wait() + portreuse::kDefaultDeadline);
  // "At once" is evidence only if it was: on a busy machine the three connects can come later
  // than the delay after the first TIME_WAIT, and then the kernel was right to let them reuse it.
  if (first_connect && cells[kSettings.size() - 1] && sysctl_value("net.ipv4.tcp_tw_reuse_delay")) {
    const auto late_ms = (cells[kSettings.size() - 1]->at - first_connect->at) / 1'000'000;
    if (late_ms >= kReuseDelay.count()) {
      inside.reap();
      const std::string why = "the machine was too busy: the connects meant to come at once came " +
                              std::to_string(late_ms) + " ms after the first TIME_WAIT, past tcp_tw_reuse_delay (" +
                              std::to_string(kReuseDelay.count()) + " ms)";
      if (attempt + 1 == kAttempts) return lab.could_not_run(why);
      too_busy = true;
      lab.you(why + "; once more, from the next four ports");
      return {};
    }
  }
  if (ended_early(inside.reap())) return stopped_early(lab);
  for (const auto& cell : cells) {
    if (!cell) return lab.could_not_run("the scenario did not happen: a connect() of the grid was not made");
  }

  // The documented rule (ip-sysctl.rst, tcp_twsk_unique): never at once; after the delay only
  // with 1 or 2 (2: loopback only, which this is). A bound port is not the sysctl's business.
  const auto name = [](const std::optional<Event>& cell) {
    return portreuse::outcome_name(portreuse::make_error(cell->error));
  };
  bool as_documented = true;
  std::string cells_json = "{";
  for (std::size_t index = 0; index < kSettings.size(); ++index) {
    const auto& at_once = cells[index];
    const auto& later = cells[index + kSettings.size()];
    const bool reuse = index != 0;
    as_documented = as_documented && at_once->error == EADDRNOTAVAIL && later->error == (reuse ? 0 : EADDRNOTAVAIL);
    cells_json += std::string(index > 0 ? "," : "") + "\"" + kSettings[index] + "\":[\"" + name(at_once) + "\",\"" +
                  name(later) + "\"]";
    lab.narrator().line("kernel", std::string("tcp_tw_reuse = ") + kSettings[index] + ": at once " + name(at_once) +
                                      ", after the delay " + name(later));
  }
  cells_json += "}";
  lab.narrator().line("kernel", "bind() to a TIME_WAIT port, then connect(), tcp_tw_reuse = 0: " + name(cells[6]));
  auto observation =
      lab.observe(cells[5], {Evidence::accepted, Evidence::client_closed_first, Evidence::time_wait_seen},
                  as_documented ? Situation::cells_as_documented : Situation::cells_differ);
  observation.fact("cells", cells_json);
  observation.fact_text("bound_connect", name(cells[6]));
  observation.detail_holds = as_documented;
  return observation;
}

Observation client_tw_reuse(Lab& lab) {
  for (int attempt = 0;; ++attempt) {
    bool too_busy = false;
    auto observation = client_tw_reuse_once(lab, attempt, too_busy);
    if (!too_busy) return observation;
  }
}

// ---- (b) An in-window RST, with tcp_rfc1337 0 and 1 -------------------------------------------

Observation rst_on_time_wait(Lab& lab, const char* rfc1337) {
  const auto to = lab.loopback();
  lab.you(std::string("a server closes first; then an RST is written by hand; tcp_rfc1337 = ") + rfc1337);
  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    const PrivateNetwork network(t, lab, {{"net.ipv4.tcp_rfc1337", rfc1337}});
    const int capture = open_capture(t);
    const auto made = make_server_time_wait(t, to, capture);
    auto server = t.alongside("server", Role::server);
    server.must("close", ::close(made.listener));  // only the TIME_WAIT holds the port now
    report_port(t, to.port());
    const auto bind_plain = [&](const char* actor) {
      auto again = t.alongside(actor, Role::server);
      const int fd = again.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
      again.call("bind", ::bind(fd, to.raw(), to.raw_length()), to);
      again.must("close", ::close(fd));
    };
    bind_plain("server again");
    if (!made.client_fin) return;
    // The TIME_WAIT waits for sequence number FIN + 1 from the client: exactly that one counts
    // as in the window (tcp_timewait_state_process).
    auto you = t.alongside("raw socket", Role::other);
    const auto expected = made.client_fin->seq + made.client_fin->length + 1;
    send_crafted(you, to, craft(made.client_port, to.port(), expected, 0, TH_RST));
    wait_for_segment(capture, to.port(), [](const Seen& seen) { return (seen.flags & TH_RST) != 0; });
    std::this_thread::sleep_for(Millis(2));  // the capture sees it first; TCP takes it next
    report_port(t, to.port());
    bind_plain("server again");
  });
  if (auto skipped = not_permitted(lab, inside, "bind")) return *skipped;
  if (ended_early(inside.reap())) return stopped_early(lab);

  // The evidence: the first plain bind was refused by the TIME_WAIT, the RST really left (sendto
  // returned the segment's length), and the rows before and after it.
  const std::size_t first_bind = index_of(lab, Call::bind, Role::server, index_of(lab, Call::listen, Role::server) + 1);
  const std::size_t sent = index_of(lab, Call::sendto, Role::other);
  const std::size_t second_bind = index_of(lab, Call::bind, Role::server, first_bind + 1);
  if (first_bind >= lab.events().size() || lab.events()[first_bind].error != EADDRINUSE) {
    return lab.could_not_run("the scenario did not happen: the bind() before the RST was not refused");
  }
  if (sent >= lab.events().size() || lab.events()[sent].value != static_cast<long>(sizeof(Segment))) {
    return lab.could_not_run("the crafted RST was not sent");
  }
  if (second_bind >= lab.events().size()) return lab.could_not_run("the bind() after the RST was never made");
  const int before = time_wait_rows(lab, 0, first_bind);
  const int after = time_wait_rows(lab, sent, second_bind);
  if (before == 0) return lab.could_not_run("the scenario did not happen: no TIME_WAIT was reported before the RST");
  if (const auto failed = failed_read(lab, 0, lab.events().size())) {
    return lab.could_not_run("the socket table could not be read", *failed);
  }
  auto observation =
      lab.observe(lab.events()[second_bind], {Evidence::accepted, Evidence::server_closed_first, Evidence::table_read},
                  after == 0 ? Situation::time_wait_ended : Situation::time_wait_kept);
  observation.fact_text("tcp_rfc1337", rfc1337);
  observation.fact_text("bind_before", portreuse::outcome_name(portreuse::make_error(lab.events()[first_bind].error)));
  observation.fact("time_wait_rows_before", std::to_string(before));
  observation.fact("time_wait_rows_after", std::to_string(after));
  return observation;
}

Observation rst_ends_time_wait(Lab& lab) {
  return rst_on_time_wait(lab, "0");
}

Observation rst_ignored_with_rfc1337(Lab& lab) {
  return rst_on_time_wait(lab, "1");
}

// ---- (c) A retransmitted FIN restarts the timer -----------------------------------------------

constexpr Millis kTimerWait{40};  // 10 jiffies at HZ=250: well above the timer's resolution

Observation fin_restarts_timer(Lab& lab) {
  const auto to = lab.loopback();
  lab.you("a server closes first; " + std::to_string(kTimerWait.count()) +
          " ms later the client's FIN arrives again, written by hand");
  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    // tcp_rfc1337 = 1: the TIME_WAIT answers the FIN with an ACK, the closed client port answers
    // that with an RST, and with 0 that RST would end the TIME_WAIT (step rst-ends-time-wait).
    const PrivateNetwork network(t, lab, {{"net.ipv4.tcp_rfc1337", "1"}});
    const int capture = open_capture(t);
    const auto made = make_server_time_wait(t, to, capture);
    std::this_thread::sleep_for(kTimerWait);
    t.report_timers(to.port());
    if (!made.client_fin) return;
    auto you = t.alongside("raw socket", Role::other);
    send_crafted(you, to,
                 craft(made.client_port, to.port(), made.client_fin->seq, made.client_fin->ack, TH_FIN | TH_ACK));
    const auto answer = wait_for_segment(
        capture, to.port(), [&](const Seen& seen) { return seen.from_port == to.port() && seen.flags == TH_ACK; });
    if (answer) t.note("the TIME_WAIT answered with an ACK, ack " + std::to_string(answer->ack));
    t.report_timers(to.port());
  });
  if (auto skipped = not_permitted(lab, inside, "sendto")) return *skipped;
  if (ended_early(inside.reap())) return stopped_early(lab);

  std::vector<long> timers;
  for (const auto& event : lab.events()) {
    if (event.call == Call::timer && event.ok()) timers.push_back(event.value);
  }
  const std::size_t sent = index_of(lab, Call::sendto, Role::other);
  if (sent >= lab.events().size() || lab.events()[sent].value != static_cast<long>(sizeof(Segment))) {
    return lab.could_not_run("the crafted FIN was not sent");
  }
  if (const auto failed = failed_read(lab, 0, lab.events().size())) {
    return lab.could_not_run("the TIME_WAIT timer could not be read", *failed);
  }
  if (timers.size() != 2)
    return lab.could_not_run("the scenario did not happen: the TIME_WAIT timer was not read twice");
  // Restarted: the timer reads higher after the FIN than before it, by more than half the wait.
  const bool restarted = timers[1] - timers[0] > kTimerWait.count() / 2;
  auto observation = lab.observe(lab.events()[sent], {Evidence::accepted, Evidence::server_closed_first},
                                 restarted ? Situation::timer_restarted : Situation::timer_not_restarted);
  observation.fact("timer_ms_before", std::to_string(timers[0]));
  observation.fact("timer_ms_after", std::to_string(timers[1]));
  observation.detail_holds = restarted;
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "A TIME_WAIT still listens to its old connection. A new SYN can reopen it, an RST can end "
        "it, a FIN starts its clock again, and tcp_tw_reuse lets a client take it over. Each step "
        "runs in a private network namespace, with segments written by hand on a raw socket.",
    .steps =
        {
            Step{
                .id = "syn-reopens-time-wait",
                .preview = "A server closes first; a new client socket binds the old client port with "
                           "SO_REUSEADDR and connects to the same server port.",
                .claim = "A TIME_WAIT may accept a new SYN from the same address pair when its sequence number "
                         "is higher than anything the old connection used, and reopen the connection.",
                .source = "RFC 1122, 4.2.2.13",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::time_wait_reopened,
                         "The SYN reached the server's TIME_WAIT, which tcp_timewait_state_process() checks: a "
                         "SYN without ACK whose sequence number lies after the old connection's end (or whose "
                         "timestamp is newer) is not an old duplicate, so the kernel ends the TIME_WAIT "
                         "(TCP_TW_SYN) and hands the SYN to the listener, with a server sequence number above "
                         "the old one. The listener accepted it, and the TIME_WAIT row is gone: the four numbers "
                         "now name the new connection. A server's TIME_WAIT does not stop its client from "
                         "coming back on the same port."},
                        {kOk, Situation::time_wait_kept,
                         "The listener accepted the connection, but the TIME_WAIT row was still listed after it."},
                        {ECONNREFUSED, Situation::any,
                         "The SYN was refused: this kernel did not let it reopen the TIME_WAIT."},
                    },
                .run = syn_reopens_time_wait,
            },
            Step{
                .id = "client-tw-reuse",
                .preview = "Clients close first from all four ephemeral ports; connect() again at once and after "
                           "tcp_tw_reuse_delay, with tcp_tw_reuse 0, 1 and 2; then from a bound TIME_WAIT port.",
                .claim = "With net.ipv4.tcp_tw_reuse, a new outgoing connection may take over a TIME_WAIT of its "
                         "own once that is safe; without it, the client must wait the TIME_WAIT out.",
                .source = "V. Bernat, \"Coping with the TCP TIME-WAIT state on busy Linux servers\"; tcp(7)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::cells_as_documented,
                         "The answer is the connect() with tcp_tw_reuse = 2 after the delay. With every port of "
                         "the range in TIME_WAIT towards this server, connect() without bind() failed at once "
                         "under every setting (EADDRNOTAVAIL): __inet_hash_connect() asks tcp_twsk_unique() about "
                         "each port, and it refuses a TIME_WAIT younger than tcp_tw_reuse_delay. After the delay, "
                         "1 and 2 (2: loopback only, and this is loopback) took one over; 0 still refused. The "
                         "last connect is the surprise: bind() with SO_REUSEADDR to a TIME_WAIT port, then "
                         "connect(), passed with tcp_tw_reuse = 0, because a connect() from a bound port asks "
                         "tcp_twsk_unique() without the sysctl's test; only TCP timestamps on the old connection "
                         "are needed. tcp_tw_reuse governs the ports the kernel picks, nothing else."},
                        {kOk, Situation::cells_differ,
                         "The connect() with tcp_tw_reuse = 2 after the delay passed, but other cells differ from "
                         "the documented rule; the grid above shows which."},
                        {EADDRNOTAVAIL, Situation::any,
                         "Even with tcp_tw_reuse = 2 and after the delay no TIME_WAIT port was taken over. Reuse "
                         "needs TCP timestamps on the old connection (net.ipv4.tcp_timestamps)."},
                    },
                .run = client_tw_reuse,
            },
            Step{
                .id = "rst-ends-time-wait",
                .preview = "A server closes first and its listener too; bind() is refused; an RST with the "
                           "sequence number the TIME_WAIT expects is sent by hand; bind() again.",
                .claim = "An RST that arrives in TIME_WAIT ends it at once (\"TIME-WAIT assassination\"), so the "
                         "port is free before the timer runs out.",
                .source = "RFC 1337; RFC 793 (the RST rule for TIME-WAIT)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::time_wait_ended,
                         "tcp_timewait_state_process() takes a segment whose sequence number is exactly the one "
                         "the TIME_WAIT waits for (the client's FIN + 1). When it is an RST and tcp_rfc1337 is 0, "
                         "the default, the kernel deschedules the TIME_WAIT at once (inet_twsk_deschedule_put), "
                         "as RFC 793 says a reset in TIME-WAIT closes the connection. The row is gone, and the "
                         "plain bind() that EADDRINUSE refused a moment ago passes. RFC 1337 calls this a hazard: "
                         "an old or forged RST ends the wait that protects a new connection from old segments."},
                        {EADDRINUSE, Situation::time_wait_kept,
                         "The RST left (sendto returned its length) but the TIME_WAIT is still listed, and the port "
                         "is still refused: this kernel ignored the reset."},
                    },
                .run = rst_ends_time_wait,
            },
            Step{
                .id = "rst-ignored-with-rfc1337",
                .preview = "The same with net.ipv4.tcp_rfc1337 = 1.",
                .claim = "A TCP that follows RFC 1337 ignores an RST in TIME-WAIT, so the TIME_WAIT (and the "
                         "port) stays until its timer runs out.",
                .source = "RFC 1337, fix F1",
                .claimed = EADDRINUSE,
                .said = Said::reference,
                .explanations =
                    {
                        {EADDRINUSE, Situation::time_wait_kept,
                         "With tcp_rfc1337 = 1 the same in-window RST reaches tcp_timewait_state_process(), which "
                         "now skips the kill: the TIME_WAIT row is still listed and bind() is still refused. This "
                         "is RFC 1337's first fix (ignore RST segments in TIME-WAIT). Linux does not restart the "
                         "timer for the RST either; the TIME_WAIT simply goes on."},
                        {kOk, Situation::time_wait_ended,
                         "Even with tcp_rfc1337 = 1 the RST ended the TIME_WAIT, and bind() passed."},
                    },
                .run = rst_ignored_with_rfc1337,
            },
            Step{
                .id = "fin-restarts-timer",
                .preview = "A server closes first; " + std::to_string(kTimerWait.count()) +
                           " ms later the client's FIN is sent again by hand, with the same sequence number; the "
                           "TIME_WAIT timer is read before and after.",
                .claim = "A TIME_WAIT that receives a retransmission of the peer's FIN acknowledges it and starts "
                         "its 2MSL timer again.",
                .source = "RFC 793 and RFC 9293, 3.10.7.4 (TIME-WAIT STATE)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::timer_restarted,
                         "The FIN carried the old sequence number, so it lies before what the TIME_WAIT waits for: "
                         "tcp_timewait_state_process() treats it as an out-of-window segment with ACK, calls "
                         "inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN) and answers with an ACK (the lost last ACK "
                         "the retransmission asks for). The timer read higher after the FIN than before it: back "
                         "at 60 s. A peer that keeps retransmitting its FIN keeps the port held."},
                        {kOk, Situation::timer_not_restarted,
                         "The FIN left (sendto returned its length), but the timer did not move back up: this "
                         "kernel did not restart the TIME_WAIT for it."},
                    },
                .run = fin_restarts_timer,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
