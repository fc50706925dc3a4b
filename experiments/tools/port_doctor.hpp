// port_doctor: the logic behind portreuse-doctor. Why would a bind() of this address and port fail
// on this machine, now? The answer is built from evidence only: the kernel's socket table
// (sock_diag), the sysctls that shape port allocation, /proc for the processes that hold the
// sockets, and trial binds of scratch sockets with each combination of SO_REUSEADDR and
// SO_REUSEPORT. What cannot be seen from here is said, not guessed.
//
// See also: tools/doctor.cpp (the command), lessons/doctor.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "portreuse/net.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse::doctor {

// What the evidence says about the port, most specific first. The slug (class_slug) is what
// --json prints and the tests compare.
enum class PortClass {
  free,                  // bind() passes now; the port is outside the ephemeral range
  ephemeral_range,       // bind() passes now, but outgoing connections may take the port first
  reserved,              // bind() passes now; ip_local_reserved_ports keeps outgoing connections off it
  listener,              // a live socket bound to the same address holds it
  reuseport_group,       // a SO_REUSEPORT group of this user: a SO_REUSEPORT socket may join it
  other_user_reuseport,  // a SO_REUSEPORT group of another user: no socket of this user may join
  wildcard_overlap,      // 0.0.0.0 against a specific address (or the other way round)
  dual_stack,            // [::] with IPV6_V6ONLY=0 against IPv4 (or the other way round)
  connection,            // no listener, but a live connection still uses the port
  time_wait,             // only TIME-WAIT sockets: nothing to stop, only to wait or to reuse
  privileged_port,       // EACCES: below ip_unprivileged_port_start
  address_not_local,     // EADDRNOTAVAIL: no interface has the address
  unexplained,           // bind() fails, but the socket table shows nothing that overlaps
  could_not_run,         // the trial bind itself could not be made (socket() failed, ...)
};

std::string_view class_slug(PortClass kind);

// Which end of a connection the port is, judged from the ephemeral port range.
enum class Side { server, client, unknown };
std::string_view side_slug(Side side);

// How an address overlaps the one asked for (the bind rules of lessons 06, 07 and 11).
enum class Overlap { none, same, wildcard, dual_stack };
std::string_view overlap_slug(Overlap overlap);

// A holder's place on the machine, from /proc.
enum class Placement { host, container, unknown };

struct ProcessInfo {
  pid_t pid = 0;
  unsigned uid = 0;
  std::string user;          // from the password database, or the number
  std::string command;       // /proc/PID/comm, escaped
  std::string command_line;  // /proc/PID/cmdline, arguments joined by spaces, escaped
  pid_t parent = 0;          // from /proc/PID/stat
  std::string cgroup;        // the cgroup v2 path (or the first v1 line), escaped
  Placement placement = Placement::unknown;
  std::vector<std::string> placement_evidence;  // "cgroup names docker", "mount namespace differs"
  bool systemd_pid1 = false;                    // this is pid 1 and it is systemd: a socket unit
  std::optional<std::string> listen_fds;        // LISTEN_FDS from its environment, when readable
  std::optional<std::string> listen_pid;        // LISTEN_PID beside it: the pid systemd meant
  bool environment_readable = false;
  std::string systemd_unit;  // "foo.service" / "foo.socket" from the cgroup, when it names one
  // Its parent is pid 1, pid 1 is systemd, and its cgroup names a .service or .socket unit:
  // systemd started it (and stopping the unit is how it goes away for good).
  bool started_by_systemd = false;
};

struct Holder {
  SocketEntry socket;
  Overlap overlap = Overlap::none;
  std::string user;                    // the socket's uid by name, as sock_diag reports it
  std::vector<ProcessInfo> processes;  // every process with a descriptor for it (when visible)
};

struct Trial {
  bool reuse_address = false;
  bool reuse_port = false;
  std::optional<int> v6only;                       // set only for the extra IPv6 trial
  std::error_code outcome;                         // of bind(); or of socket()/setsockopt() when setup_call is set
  std::string setup_call;                          // "socket" or "setsockopt" when the trial could not reach bind()
  [[nodiscard]] std::string options_text() const;  // "SO_REUSEADDR+SO_REUSEPORT", "no options"
};

struct PortRange {
  std::uint16_t low = 0;
  std::uint16_t high = 0;
  [[nodiscard]] bool contains(std::uint16_t port) const noexcept { return port >= low && port <= high; }
};

struct Sysctls {
  std::optional<PortRange> ephemeral;  // net.ipv4.ip_local_port_range
  std::string ephemeral_text;          // as read, or the reason it could not be
  std::vector<PortRange> reserved;     // net.ipv4.ip_local_reserved_ports
  std::string reserved_text;           // as read ("" = none), or why not
  bool reserved_readable = false;
  std::optional<int> unprivileged_port_start;  // net.ipv4.ip_unprivileged_port_start
  std::optional<int> bindv6only;               // net.ipv6.bindv6only
};

struct Diagnosis {
  Endpoint attempted;
  Transport transport = Transport::tcp;
  PortClass kind = PortClass::could_not_run;
  std::vector<Trial> trials;
  std::vector<Holder> holders;  // every socket with this local port, overlapping or not
  std::optional<std::error_code> table_error;
  Sysctls sysctls;
  bool in_ephemeral_range = false;
  bool in_reserved_ports = false;
  Side side = Side::unknown;        // for connection and time_wait
  std::string side_basis;           // the ports that decided it
  double time_wait_left = 0;        // longest TIME-WAIT timer among the overlapping sockets, seconds
  std::string headline;             // one sentence: what the class means here
  std::string fix;                  // the smallest change that makes bind() pass (or keeps it passing)
  std::vector<std::string> unseen;  // what this run could not see, and why
  unsigned own_uid = 0;
  int unreadable_processes = 0;  // /proc/PID/fd that this user may not read
};

// Runs every check for a bind() of `attempted` (TCP or UDP) and classifies the result.
Diagnosis diagnose(const Endpoint& attempted, Transport transport);

// Plain text for a terminal, every line at most `width` columns.
std::string render_text(const Diagnosis& diagnosis, std::size_t width = 80);
// One JSON object on one line: the class and all the evidence.
std::string render_json(const Diagnosis& diagnosis);

// Helpers, exposed for the tests.
Overlap overlap_of(const Endpoint& attempted, const Endpoint& bound);
// "32768 60999" (tabs allowed) -> 32768..60999.
std::optional<PortRange> parse_port_range(std::string_view text);
// "5000,8000-8010" -> two ranges; nullopt when malformed. "" -> none.
std::optional<std::vector<PortRange>> parse_port_list(std::string_view text);
// Control characters, C1 controls and bytes that are not UTF-8 become \xNN; a backslash is
// doubled. What a process calls itself can then not move the cursor or recolour a terminal.
std::string escape_for_terminal(std::string_view text);
// Lines of at most width columns; words longer than that are cut.
std::vector<std::string> wrap(std::string_view text, std::size_t width);

}  // namespace portreuse::doctor
