// The kernel's socket table, read from /proc/net/{tcp,tcp6,udp,udp6} so that no ss or netstat
// is needed: state, both endpoints, and the TIME_WAIT timer that says how long a port stays held.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portreuse/errors.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

// The numbers the kernel prints in the "st" column (include/net/tcp_states.h).
enum class TcpState : int {
  established = 1,
  syn_sent = 2,
  syn_recv = 3,
  fin_wait1 = 4,
  fin_wait2 = 5,
  time_wait = 6,
  close = 7,
  close_wait = 8,
  last_ack = 9,
  listen = 10,
  closing = 11,
  new_syn_recv = 12,
};

// The "tr" column: which timer runs on the socket.
enum class TimerKind : int { none = 0, retransmit = 1, keepalive = 2, time_wait = 3, probe = 4 };

struct SocketEntry {
  Transport transport = Transport::tcp;
  TcpState state = TcpState::close;
  Endpoint local;
  Endpoint remote;
  TimerKind timer = TimerKind::none;
  double timer_seconds = 0.0;  // what is left on the timer
  unsigned uid = 0;
  unsigned long inode = 0;  // 0 for TIME_WAIT: no process owns it any more
  // IPV6_V6ONLY of an IPv6 socket that listens or is only bound (UDP: unconnected), as sock_diag
  // reports it (INET_DIAG_SKV6ONLY); nullopt for other sockets and when read from /proc/net.
  std::optional<bool> v6only;

  [[nodiscard]] std::string state_name() const;  // "TIME-WAIT", as ss spells it; "UNCONN" for UDP
  // "TIME-WAIT  127.0.0.1:40123 <-> 127.0.0.1:51234, 59.8 s left"
  [[nodiscard]] std::string describe() const;
  [[nodiscard]] bool is(TcpState wanted) const noexcept { return state == wanted; }
};

// One data line of /proc/net/{tcp,tcp6,udp,udp6}; nullopt for the header or a malformed line.
// ticks_per_second converts the timer column (sysconf(_SC_CLK_TCK) on a live system).
std::optional<SocketEntry> parse_proc_net_line(std::string_view line, int family, Transport transport,
                                               long ticks_per_second);

// Where the table is read from. Both give the kernel's own view, with the same fields.
enum class TableSource {
  automatic,  // sock_diag netlink when the kernel offers it, else /proc/net
  netlink,    // NETLINK_SOCK_DIAG, what ss uses: well under a millisecond
  proc,       // /proc/net/{tcp,tcp6,...}: walks the kernel's whole connection hash on every read,
              // several milliseconds on a machine with much memory (measured: README, Performance)
};

// Which IPv6 TCP sockets a read returns. Every dump of a connection state walks the kernel's
// whole connection hash (262,144 buckets with 24 GiB of memory, about 2.4 ms), once for IPv4 and
// once more for IPv6; listeners are in a small table of their own (0.05 ms). A step that never
// used IPv6 and in which nothing failed needs only the IPv6 listeners: they are what an IPv4
// bind() can meet from the IPv6 side (a dual-stack [::]:P). Lab::show_sockets decides.
enum class Ipv6Rows { all, listeners };

// Every TCP (or UDP) socket of this network namespace, IPv4 and IPv6.
// The environment variable PORTREUSE_SOCKET_TABLE=proc (or =netlink) overrides `automatic`;
// /proc always gives every row.
// ENOENT when neither source exists (not Linux, or /proc not mounted).
Result<std::vector<SocketEntry>> read_socket_table(Transport transport = Transport::tcp,
                                                   TableSource source = TableSource::automatic,
                                                   Ipv6Rows ipv6 = Ipv6Rows::all);

// Sockets whose local port is `port`: the ones a bind() to that port is checked against.
std::vector<SocketEntry> bound_to_port(const std::vector<SocketEntry>& table, std::uint16_t port);
// Sockets with `port` at either end: also shows a client's TIME_WAIT towards the port.
std::vector<SocketEntry> involving_port(const std::vector<SocketEntry>& table, std::uint16_t port);

struct SocketOwner {
  pid_t pid = 0;
  std::string command;  // from /proc/PID/comm
};

// The process holding the socket with this inode, found through /proc/*/fd; nullopt when
// unknown (TIME_WAIT, another user's process without permission, or not Linux).
std::optional<SocketOwner> find_socket_owner(unsigned long inode);

}  // namespace portreuse
