#include "port_doctor.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "portreuse/json.hpp"
#include "portreuse/netns.hpp"

namespace portreuse::doctor {
namespace {

// ---------------------------------------------------------------- small text helpers

std::string number_text(double value, const char* format) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), format, value);
  return text.data();
}

std::string seconds_text(double seconds) {
  return number_text(seconds, "%.1f") + " s";
}

std::string port_text(std::uint16_t port) {
  return std::to_string(port);
}

std::string range_text(const PortRange& range) {
  return range.low == range.high ? port_text(range.low) : port_text(range.low) + "-" + port_text(range.high);
}

std::string user_name(unsigned uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::array<char, 1024> buffer{};
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return escape_for_terminal(found->pw_name);
  }
  return std::to_string(uid);
}

std::optional<unsigned long> parse_unsigned(std::string_view text) {
  unsigned long value = 0;
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || text.empty()) return std::nullopt;
  return value;
}

// ---------------------------------------------------------------- /proc

// The whole file, or the errno that stopped the read (EACCES for another user's environ).
Result<std::string> read_whole(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "re");
  if (file == nullptr) return last_error();
  std::string text;
  std::array<char, 4096> chunk{};
  for (;;) {
    const auto got = std::fread(chunk.data(), 1, chunk.size(), file);
    text.append(chunk.data(), got);
    if (got < chunk.size()) break;
    if (text.size() > (1U << 20U)) break;  // a command line or environment is never this long
  }
  const bool failed = std::ferror(file) != 0;
  const auto error = last_error();
  std::fclose(file);
  if (failed) return error;
  return text;
}

Result<std::string> read_link(const std::string& path) {
  std::array<char, 256> target{};
  const auto length = ::readlink(path.c_str(), target.data(), target.size() - 1);
  if (length < 0) return last_error();
  return std::string(target.data(), static_cast<std::size_t>(length));
}

std::string first_line(std::string text) {
  if (const auto end = text.find('\n'); end != std::string::npos) text.resize(end);
  return text;
}

// Every process with a descriptor for one of these socket inodes. Counts the processes whose
// descriptors this user may not list: their sockets can show no owner.
std::map<unsigned long, std::vector<pid_t>> processes_holding(const std::set<unsigned long>& inodes, int& unreadable) {
  std::map<unsigned long, std::vector<pid_t>> found;
  unreadable = 0;
  if (inodes.empty()) return found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (const dirent* process = ::readdir(proc)) {
    const auto pid = parse_unsigned(process->d_name);
    if (!pid) continue;
    const std::string fd_dir = std::string("/proc/") + process->d_name + "/fd";
    DIR* fds = ::opendir(fd_dir.c_str());
    if (fds == nullptr) {
      if (errno == EACCES || errno == EPERM) ++unreadable;
      continue;  // EACCES: another user's; ENOENT: it has just ended
    }
    while (const dirent* fd = ::readdir(fds)) {
      auto target = read_link(fd_dir + "/" + fd->d_name);
      constexpr std::string_view kSocket = "socket:[";
      if (!target || target->rfind(kSocket, 0) != 0 || target->back() != ']') continue;
      const auto inode =
          parse_unsigned(std::string_view(*target).substr(kSocket.size(), target->size() - kSocket.size() - 1));
      if (!inode || inodes.count(*inode) == 0) continue;
      auto& pids = found[*inode];
      const auto as_pid = static_cast<pid_t>(*pid);
      if (std::find(pids.begin(), pids.end(), as_pid) == pids.end()) pids.push_back(as_pid);
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  return found;
}

bool mentions_container(std::string_view cgroup, std::string& which) {
  for (const char* word :
       {"docker", "containerd", "kubepods", "libpod", "podman", "lxc", "crio", "garden", "machine.slice"}) {
    if (cgroup.find(word) != std::string_view::npos) {
      which = word;
      return true;
    }
  }
  return false;
}

// The unit a cgroup v2 path names, when its last part is a systemd unit.
std::string unit_of(std::string_view cgroup) {
  const auto slash = cgroup.rfind('/');
  const auto last = cgroup.substr(slash == std::string_view::npos ? 0 : slash + 1);
  for (std::string_view suffix : {".service", ".socket", ".scope"}) {
    if (last.size() > suffix.size() && last.substr(last.size() - suffix.size()) == suffix) return std::string(last);
  }
  return "";
}

ProcessInfo inspect_process(pid_t pid) {
  ProcessInfo info;
  info.pid = pid;
  const std::string base = "/proc/" + std::to_string(pid);
  if (auto comm = read_whole(base + "/comm")) info.command = escape_for_terminal(first_line(*comm));
  if (auto cmdline = read_whole(base + "/cmdline")) {
    std::string joined = *cmdline;
    while (!joined.empty() && joined.back() == '\0') joined.pop_back();
    std::replace(joined.begin(), joined.end(), '\0', ' ');
    info.command_line = escape_for_terminal(joined);
  }
  if (auto status = read_whole(base + "/status")) {
    std::istringstream lines(*status);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("Uid:", 0) != 0) continue;
      std::istringstream fields(line.substr(4));
      unsigned real = 0;
      unsigned effective = 0;
      if (fields >> real >> effective) info.uid = effective;
    }
    info.user = user_name(info.uid);
  }
  if (auto stat = read_whole(base + "/stat")) {
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
    const auto close = stat->rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(stat->substr(close + 1));
      std::string state;
      long parent = 0;
      if (fields >> state >> parent) info.parent = static_cast<pid_t>(parent);
    }
  }
  if (auto cgroup = read_whole(base + "/cgroup")) {
    std::istringstream lines(*cgroup);
    std::string line;
    std::string chosen;
    while (std::getline(lines, line)) {
      const auto second_colon = line.find(':', line.find(':') + 1);
      if (second_colon == std::string::npos) continue;
      if (line.rfind("0::", 0) == 0 || chosen.empty()) chosen = line.substr(second_colon + 1);
    }
    info.cgroup = escape_for_terminal(chosen);
    info.systemd_unit = unit_of(info.cgroup);
  }
  std::string which;
  bool container = false;
  if (mentions_container(info.cgroup, which)) {
    container = true;
    info.placement_evidence.push_back("its cgroup names " + which);
  }
  if (info.command == "docker-proxy" || info.command == "rootlessport") {
    container = true;
    info.placement_evidence.push_back(info.command + " forwards this port to a container");
  }
  bool namespaces_known = true;
  for (const char* kind : {"mnt", "net"}) {
    const auto theirs = read_link(base + "/ns/" + kind);
    const auto ours = read_link(std::string("/proc/self/ns/") + kind);
    if (!theirs || !ours) {
      namespaces_known = false;
      continue;
    }
    if (*theirs != *ours) {
      container = true;
      info.placement_evidence.push_back(std::string(kind == std::string_view("mnt") ? "mount" : "network") +
                                        " namespace differs from this doctor's");
    }
  }
  info.placement = container ? Placement::container : namespaces_known ? Placement::host : Placement::unknown;
  if (!namespaces_known && !container) {
    info.placement_evidence.push_back("its namespaces are not readable without root");
  }
  info.systemd_pid1 = pid == 1 && info.command == "systemd";
  if (info.parent == 1 && !info.systemd_unit.empty() && info.systemd_unit.find(".scope") == std::string::npos) {
    const auto init = read_whole("/proc/1/comm");
    info.started_by_systemd = init && first_line(*init) == "systemd";
  }
  if (auto environ = read_whole(base + "/environ")) {
    info.environment_readable = true;
    std::optional<std::string> listen_pid;
    std::optional<std::string> listen_fds;
    std::size_t start = 0;
    while (start < environ->size()) {
      auto end = environ->find('\0', start);
      if (end == std::string::npos) end = environ->size();
      const std::string_view variable(environ->data() + start, end - start);
      if (variable.rfind("LISTEN_PID=", 0) == 0) listen_pid = std::string(variable.substr(11));
      if (variable.rfind("LISTEN_FDS=", 0) == 0) listen_fds = std::string(variable.substr(11));
      start = end + 1;
    }
    // systemd sets LISTEN_PID to the pid it hands the sockets to; a child that inherited the
    // environment is not the one they were meant for, but it holds them all the same.
    if (listen_fds) info.listen_fds = escape_for_terminal(*listen_fds);
    if (listen_fds && listen_pid) info.listen_pid = escape_for_terminal(*listen_pid);
  }
  return info;
}

// ---------------------------------------------------------------- addresses

enum class AddressKind { v4_any, v4, v6_any, v6 };

// An address as the bind rules see it: its kind, and its bytes (4 for IPv4, also for an IPv4
// address seen through an IPv6 socket as ::ffff:a.b.c.d; 16 for IPv6).
struct Plain {
  AddressKind kind;
  std::array<std::uint8_t, 16> bytes{};
};

Plain plain(const Endpoint& endpoint) {
  Plain result{AddressKind::v4, {}};
  if (endpoint.family() == AF_INET) {
    const auto& address = reinterpret_cast<const sockaddr_in*>(endpoint.raw())->sin_addr;
    std::memcpy(result.bytes.data(), &address, sizeof address);
    result.kind = endpoint.is_wildcard() ? AddressKind::v4_any : AddressKind::v4;
    return result;
  }
  const auto& address = reinterpret_cast<const sockaddr_in6*>(endpoint.raw())->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&address)) {
    std::memcpy(result.bytes.data(), &address.s6_addr[12], 4);
    const bool any = std::all_of(result.bytes.begin(), result.bytes.begin() + 4, [](std::uint8_t b) { return b == 0; });
    result.kind = any ? AddressKind::v4_any : AddressKind::v4;
    return result;
  }
  std::memcpy(result.bytes.data(), &address, sizeof address);
  result.kind = endpoint.is_wildcard() ? AddressKind::v6_any : AddressKind::v6;
  return result;
}

bool same_address(const Plain& one, const Plain& other) {
  return one.kind == other.kind && one.bytes == other.bytes;
}

bool is_v4(AddressKind kind) {
  return kind == AddressKind::v4 || kind == AddressKind::v4_any;
}

// attempted_v6only: IPV6_V6ONLY of the socket the user would make (net.ipv6.bindv6only).
Overlap overlap_with(const Endpoint& attempted, bool attempted_v6only, const SocketEntry& bound) {
  const auto mine = plain(attempted);
  const auto theirs = plain(bound.local);
  if (is_v4(mine.kind) == is_v4(theirs.kind)) {
    if (same_address(mine, theirs)) return Overlap::same;
    const bool any = mine.kind == AddressKind::v4_any || mine.kind == AddressKind::v6_any ||
                     theirs.kind == AddressKind::v4_any || theirs.kind == AddressKind::v6_any;
    return any ? Overlap::wildcard : Overlap::none;
  }
  // One IPv4, one IPv6: only an IPv6 wildcard that also takes IPv4 reaches across.
  if (theirs.kind == AddressKind::v6_any) return bound.v6only.value_or(false) ? Overlap::none : Overlap::dual_stack;
  if (mine.kind == AddressKind::v6_any) return attempted_v6only ? Overlap::none : Overlap::dual_stack;
  return Overlap::none;
}

// ---------------------------------------------------------------- trial binds

Trial trial_bind(const Endpoint& attempted, Transport transport, bool reuse_address, bool reuse_port,
                 std::optional<int> v6only = std::nullopt) {
  Trial trial;
  trial.reuse_address = reuse_address;
  trial.reuse_port = reuse_port;
  trial.v6only = v6only;
  const int type = (transport == Transport::tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
  const int fd = ::socket(attempted.family(), type, 0);
  if (fd < 0) {
    trial.setup_call = "socket";
    trial.outcome = last_error();
    return trial;
  }
  const UniqueFd scratch(fd);
  const int on = 1;
  if (reuse_address && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
    trial.setup_call = "setsockopt SO_REUSEADDR";
    trial.outcome = last_error();
    return trial;
  }
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
    trial.setup_call = "setsockopt SO_REUSEPORT";
    trial.outcome = last_error();
    return trial;
  }
  if (v6only && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &*v6only, sizeof *v6only) != 0) {
    trial.setup_call = "setsockopt IPV6_V6ONLY";
    trial.outcome = last_error();
    return trial;
  }
  // bind() only: a scratch socket that listened could be handed a real client's connection.
  // The scratch socket is closed when `scratch` goes; a bound socket that never connected
  // leaves nothing behind.
  if (::bind(fd, attempted.raw(), attempted.raw_length()) != 0) trial.outcome = last_error();
  return trial;
}

std::string outcome_text(const Trial& trial) {
  if (!trial.setup_call.empty()) return trial.setup_call + ": " + outcome_name(trial.outcome);
  return trial.outcome ? outcome_name(trial.outcome) : "passed";
}

// ---------------------------------------------------------------- sysctls

Sysctls read_sysctls() {
  Sysctls sysctls;
  if (auto range = read_sysctl("net.ipv4.ip_local_port_range")) {
    sysctls.ephemeral = parse_port_range(*range);
    sysctls.ephemeral_text = *range;
  } else {
    sysctls.ephemeral_text = "unreadable: " + outcome_name(range.error());
  }
  if (auto reserved = read_sysctl("net.ipv4.ip_local_reserved_ports")) {
    sysctls.reserved_text = *reserved;
    if (auto list = parse_port_list(*reserved)) {
      sysctls.reserved = *list;
      sysctls.reserved_readable = true;
    }
  } else {
    sysctls.reserved_text = "unreadable: " + outcome_name(reserved.error());
  }
  if (auto start = read_sysctl("net.ipv4.ip_unprivileged_port_start")) {
    if (auto value = parse_unsigned(*start)) sysctls.unprivileged_port_start = static_cast<int>(*value);
  }
  if (auto v6only = read_sysctl("net.ipv6.bindv6only")) {
    if (auto value = parse_unsigned(*v6only)) sysctls.bindv6only = static_cast<int>(*value);
  }
  return sysctls;
}

// ---------------------------------------------------------------- classification

bool is_live_bound(const SocketEntry& entry) {
  // UDP has no connection states worth separating: every UDP socket receives on its port.
  if (entry.transport == Transport::udp) return true;
  return entry.is(TcpState::listen) || entry.is(TcpState::close);
}

bool is_time_wait(const SocketEntry& entry) {
  return entry.transport == Transport::tcp && entry.is(TcpState::time_wait);
}

std::string owner_words(const Holder& holder) {
  if (holder.processes.empty()) return "uid " + std::to_string(holder.socket.uid) + " (" + holder.user + ")";
  std::string text;
  for (const auto& process : holder.processes) {
    if (!text.empty()) text += ", ";
    text += "pid " + std::to_string(process.pid) + " (" + process.command + ")";
  }
  return text;
}

std::string trial_words(const Diagnosis& diagnosis, bool reuse_address, bool reuse_port) {
  for (const auto& trial : diagnosis.trials) {
    if (trial.reuse_address == reuse_address && trial.reuse_port == reuse_port && !trial.v6only) {
      return trial.outcome ? "answered " + outcome_name(trial.outcome) : "passed";
    }
  }
  return "was not made";
}

bool trial_passed(const Diagnosis& diagnosis, bool reuse_address, bool reuse_port) {
  for (const auto& trial : diagnosis.trials) {
    if (trial.reuse_address == reuse_address && trial.reuse_port == reuse_port && !trial.v6only) {
      return trial.setup_call.empty() && !trial.outcome;
    }
  }
  return false;
}

// How to get rid of a live holder, from what /proc shows about its processes.
std::string stop_holder(const Diagnosis& diagnosis, const Holder& holder) {
  const auto port = port_text(diagnosis.attempted.port());
  for (const auto& process : holder.processes) {
    if (process.systemd_pid1) {
      return "systemd (pid 1) holds the socket for a socket unit: `systemctl list-sockets` names the unit "
             "that listens on " +
             port + "; stop that .socket unit (stopping only its service leaves systemd listening)";
    }
  }
  for (const auto& process : holder.processes) {
    if (process.listen_fds) {
      return "pid " + std::to_string(process.pid) + " (" + process.command +
             (process.systemd_unit.empty() ? "" : ", unit " + process.systemd_unit) +
             ") got the socket from systemd socket activation (LISTEN_FDS=" + *process.listen_fds +
             " in its environment): stop the .socket unit that feeds it (`systemctl list-sockets`), not only the "
             "service";
    }
  }
  for (const auto& process : holder.processes) {
    if (process.command == "docker-proxy" || process.command == "rootlessport") {
      return process.command + " (pid " + std::to_string(process.pid) +
             ") publishes a container's port: `docker ps` (or podman ps) shows which container; stop it or "
             "publish another host port";
    }
  }
  for (const auto& process : holder.processes) {
    if (process.placement == Placement::container) {
      return "stop pid " + std::to_string(process.pid) + " (" + process.command + "), which runs in a container (" +
             process.placement_evidence.front() + "), with the container's own tool";
    }
  }
  if (!holder.processes.empty()) {
    std::string pids;
    for (const auto& process : holder.processes) pids += " " + std::to_string(process.pid);
    std::string text = "stop " + owner_words(holder) + ": kill" + pids + ", or stop it the way it was started";
    for (const auto& process : holder.processes) {
      if (process.started_by_systemd) {
        text = "stop the unit systemd started it as: systemctl stop " + process.systemd_unit + " (pid " +
               std::to_string(process.pid) + ", " + process.command +
               "; killing it alone may make systemd start it again)";
        break;
      }
    }
    if (holder.processes.size() > 1) text += "; every one of them holds the socket, so all must go";
    return text;
  }
  if (holder.socket.uid != diagnosis.own_uid && diagnosis.own_uid != 0) {
    return "the socket belongs to uid " + std::to_string(holder.socket.uid) + " (" + holder.user +
           "), whose processes you may not inspect: run `sudo portreuse-doctor " + port +
           "` to name the process, then stop it";
  }
  return "no process in this /proc holds the socket (it may live in another PID namespace, such as a "
         "container sharing this network, or it has just ended): run again, or look in your containers";
}

const Holder* first_holder(const std::vector<const Holder*>& holders, Overlap overlap) {
  for (const auto* holder : holders) {
    if (holder->overlap == overlap) return holder;
  }
  return nullptr;
}

void decide_side(Diagnosis& diagnosis, const std::vector<const Holder*>& sockets) {
  const auto& range = diagnosis.sysctls.ephemeral;
  if (!range || sockets.empty()) {
    diagnosis.side = Side::unknown;
    diagnosis.side_basis = "the ephemeral port range could not be read";
    return;
  }
  std::set<Side> sides;
  std::string basis;
  for (const auto* holder : sockets) {
    const auto local = holder->socket.local.port();
    const auto peer = holder->socket.remote.port();
    const std::string range_words = "ip_local_port_range " + range_text(*range);
    if (range->contains(local) && !range->contains(peer)) {
      sides.insert(Side::client);
      basis = "port " + port_text(local) + " is inside " + range_words + " and the peer's port " + port_text(peer) +
              " is not: the kernel picked it for an outgoing connection";
    } else if (!range->contains(local)) {
      sides.insert(Side::server);
      basis = "port " + port_text(local) + " is outside " + range_words +
              ", so no outgoing connection was given it: the connection came in to it";
    } else {
      sides.insert(Side::unknown);
      basis = "both ports (" + port_text(local) + ", " + port_text(peer) + ") are inside " + range_words;
    }
  }
  diagnosis.side = sides.size() == 1 ? *sides.begin() : Side::unknown;
  diagnosis.side_basis = sides.size() == 1 ? basis : "the sockets on this port differ: some look like each side";
}

void classify_free(Diagnosis& diagnosis) {
  const auto port = port_text(diagnosis.attempted.port());
  const auto& range = diagnosis.sysctls.ephemeral;
  if (diagnosis.in_reserved_ports) {
    diagnosis.kind = PortClass::reserved;
    diagnosis.headline = "bind() of " + diagnosis.attempted.text() +
                         " passed just now, and the port is in ip_local_reserved_ports, so the kernel "
                         "never hands it to an outgoing connection.";
    diagnosis.fix = "Nothing to fix: the port is free and kept free of outgoing connections.";
    return;
  }
  if (diagnosis.in_ephemeral_range) {
    diagnosis.kind = PortClass::ephemeral_range;
    diagnosis.headline = "bind() of " + diagnosis.attempted.text() + " passed just now, but " + port +
                         " lies inside the ephemeral port range " + range_text(*range) +
                         ": any outgoing connection may be given this port before your server starts, and "
                         "then the bind fails.";
    std::string reserved =
        diagnosis.sysctls.reserved_text.empty() ? port : diagnosis.sysctls.reserved_text + "," + port;
    diagnosis.fix = "Keep outgoing connections off the port: sysctl -w net.ipv4.ip_local_reserved_ports=" + reserved +
                    " (persist it in /etc/sysctl.d), or move the server to a port outside " + range_text(*range) + ".";
    return;
  }
  diagnosis.kind = PortClass::free;
  diagnosis.headline = "Nothing holds " + diagnosis.attempted.text() + ": bind() without options passed just now" +
                       (range ? ", and " + port + " is outside the ephemeral range " + range_text(*range) + "." : ".");
  diagnosis.fix = "Nothing to fix: bind() passes.";
}

void classify_live(Diagnosis& diagnosis, const std::vector<const Holder*>& live) {
  const auto* holder = first_holder(live, Overlap::same);
  if (holder == nullptr) holder = first_holder(live, Overlap::wildcard);
  if (holder == nullptr) holder = first_holder(live, Overlap::dual_stack);
  const auto stop = stop_holder(diagnosis, *holder);
  const auto reuse_address = trial_words(diagnosis, true, false);
  const bool listening = diagnosis.transport == Transport::udp || holder->socket.is(TcpState::listen);
  const std::string what = diagnosis.transport == Transport::udp ? "a live UDP socket"
                           : listening                           ? "a live listener"
                                                                 : "a live socket (bound, not listening yet)";

  if (holder->overlap == Overlap::same) {
    std::vector<const Holder*> group;
    for (const auto* other : live) {
      if (other->overlap == Overlap::same && same_address(plain(other->socket.local), plain(holder->socket.local))) {
        group.push_back(other);
      }
    }
    const bool joinable = trial_passed(diagnosis, false, true) || trial_passed(diagnosis, true, true);
    const bool foreign = std::any_of(group.begin(), group.end(),
                                     [&](const Holder* member) { return member->socket.uid != diagnosis.own_uid; });
    if (joinable && diagnosis.transport == Transport::tcp) {
      diagnosis.kind = PortClass::reuseport_group;
      diagnosis.headline = "A SO_REUSEPORT group of yours listens on " + holder->socket.local.text() + " (" +
                           std::to_string(group.size()) +
                           " socket(s)): a scratch socket with SO_REUSEPORT joined it in the trial.";
      diagnosis.fix =
          "To add a worker, set SO_REUSEPORT on your socket before bind(). To replace the old "
          "server, do not: both would get connections, and the old one's queue is lost when it "
          "closes. Hand the listening socket over, or " +
          stop + ".";
      return;
    }
    if (group.size() >= 2 && foreign && diagnosis.transport == Transport::tcp) {
      diagnosis.kind = PortClass::other_user_reuseport;
      diagnosis.headline = std::to_string(group.size()) + " listening sockets of uid " +
                           std::to_string(holder->socket.uid) + " (" + holder->user + ") share " +
                           holder->socket.local.text() +
                           ", so they set SO_REUSEPORT; the kernel lets only sockets of the same user join such "
                           "a group, and the trial with SO_REUSEPORT " +
                           trial_words(diagnosis, false, true) + ".";
      diagnosis.fix = "Run your server as uid " + std::to_string(holder->socket.uid) + " (" + holder->user +
                      ") if it is meant to join that group; otherwise use another port, or " + stop + ".";
      return;
    }
    diagnosis.kind = PortClass::listener;
    diagnosis.headline =
        "The port is taken by " + what + " on " + holder->socket.local.text() + ", " + owner_words(*holder) + ".";
    diagnosis.fix = "Stop it, or use another port: " + stop + ". SO_REUSEADDR does not help against a live " +
                    (diagnosis.transport == Transport::udp ? "socket that did not set it" : "listener") +
                    " (the trial with it " + reuse_address + ").";
    if (diagnosis.transport == Transport::udp && trial_passed(diagnosis, true, false)) {
      diagnosis.fix =
          "The holder set SO_REUSEADDR too: with it on your socket the bind passed in the trial, "
          "and both sockets then share the port (for unicast, one of them gets each datagram). "
          "To have the port alone: " +
          stop + ".";
    }
    if (holder->socket.uid != diagnosis.own_uid && diagnosis.transport == Transport::tcp &&
        !holder->processes.empty()) {
      diagnosis.fix += " The socket belongs to uid " + std::to_string(holder->socket.uid) +
                       ": even with SO_REUSEPORT on both, only the same user may share it.";
    }
    return;
  }
  if (holder->overlap == Overlap::wildcard) {
    diagnosis.kind = PortClass::wildcard_overlap;
    const bool mine_is_wildcard = diagnosis.attempted.is_wildcard();
    diagnosis.headline = "The port is taken by " + what + " on " + holder->socket.local.text() + ", " +
                         owner_words(*holder) + ", and it overlaps " + diagnosis.attempted.text() +
                         ": the wildcard address covers every specific one.";
    diagnosis.fix = mine_is_wildcard ? "Bind only the specific address your server needs, if the holder does not "
                                       "use it, or use another port; or " +
                                           stop + "."
                                     : "The holder listens on every address, yours included: make it bind only the "
                                       "addresses it needs, or use another port, or " +
                                           stop + ".";
    diagnosis.fix += " SO_REUSEADDR does not lift this on Linux (the trial with it " + reuse_address + ").";
    return;
  }
  diagnosis.kind = PortClass::dual_stack;
  if (is_v4(plain(diagnosis.attempted).kind)) {
    diagnosis.headline = "The port is taken by " + what + " on " + holder->socket.local.text() + ", " +
                         owner_words(*holder) + ", with IPV6_V6ONLY=0" + (holder->socket.v6only ? " (sock_diag)" : "") +
                         ": an IPv6 wildcard socket that takes IPv4 too, so it holds " + diagnosis.attempted.text() +
                         " as well.";
    diagnosis.fix = "That server already answers IPv4 on port " + port_text(diagnosis.attempted.port()) +
                    ": you may not need a second one. If it should serve IPv6 only, set IPV6_V6ONLY=1 on its "
                    "socket before bind(); then both bind. Or " +
                    stop + ".";
  } else {
    std::string v6only_trial = "was not made";
    for (const auto& trial : diagnosis.trials) {
      if (trial.v6only) v6only_trial = trial.outcome ? "answered " + outcome_name(trial.outcome) : "passed";
    }
    diagnosis.headline = "The port is taken by " + what + " on " + holder->socket.local.text() + ", " +
                         owner_words(*holder) + "; your socket on " + diagnosis.attempted.text() +
                         " would take IPv4 too (IPV6_V6ONLY=0), so it overlaps.";
    diagnosis.fix =
        "Set IPV6_V6ONLY=1 on your socket before bind() to leave IPv4 to the holder (the trial "
        "with it " +
        v6only_trial + "); or " + stop + ".";
  }
}

void classify_connection(Diagnosis& diagnosis, const std::vector<const Holder*>& connections) {
  decide_side(diagnosis, connections);
  const auto* holder = connections.front();
  diagnosis.kind = PortClass::connection;
  diagnosis.headline =
      "Nothing listens, but a connection still uses the port: " + holder->socket.state_name() + " " +
      holder->socket.local.text() + " <-> " + holder->socket.remote.text() + ", " + owner_words(*holder) +
      (connections.size() > 1 ? " (and " + std::to_string(connections.size() - 1) + " more)" : "") + ".";
  const auto stop = holder->processes.empty() ? std::string("it ends by itself or with its peer")
                                              : "end it: " + stop_holder(diagnosis, *holder);
  if (diagnosis.side == Side::client) {
    diagnosis.fix = "An outgoing connection got this port from the ephemeral range. Wait until it closes, or " + stop +
                    "; then keep it from happening again: sysctl -w net.ipv4.ip_local_reserved_ports=" +
                    port_text(diagnosis.attempted.port()) + ", or a server port outside the range.";
    return;
  }
  if (trial_passed(diagnosis, true, false)) {
    diagnosis.fix =
        "Set SO_REUSEADDR on your socket before bind(): the trial with it passed, because the old "
        "listener had set it too. Or " +
        stop + ".";
    return;
  }
  diagnosis.fix =
      "A connection accepted earlier outlives its listener (a forked child or a worker still "
      "serving it): " +
      stop +
      ". SO_REUSEADDR on your socket alone did not pass (the old listener did not set it); set it "
      "on every start from now on and the next restart binds next to such connections.";
}

void classify_time_wait(Diagnosis& diagnosis, const std::vector<const Holder*>& time_waits) {
  decide_side(diagnosis, time_waits);
  for (const auto* holder : time_waits) {
    diagnosis.time_wait_left = std::max(diagnosis.time_wait_left, holder->socket.timer_seconds);
  }
  const auto left = seconds_text(diagnosis.time_wait_left);
  diagnosis.kind = PortClass::time_wait;
  diagnosis.headline = "Only TIME-WAIT holds the port: " + std::to_string(time_waits.size()) +
                       " ended connection(s), the last one for another " + left +
                       ". No process owns them; stopping programs does not help.";
  std::string fix;
  if (diagnosis.side == Side::client) {
    fix =
        "The port was a client's: an outgoing connection got it from the ephemeral range and closed first. "
        "Wait " +
        left +
        ", and keep outgoing connections off a server's port (ip_local_reserved_ports) or move the "
        "server out of the range.";
  } else if (trial_passed(diagnosis, true, false)) {
    fix =
        "Set SO_REUSEADDR on your socket before bind(): the trial with it passed, because the sockets these "
        "TIME-WAIT entries came from had it too. (Go, Node, Rust's std and .NET set it for you.)";
  } else {
    fix = "Wait " + left +
          " or use another port. SO_REUSEADDR on your socket alone did not pass in the trial: on Linux a "
          "TIME-WAIT entry keeps the option of the socket it came from, and that one did not set it. Set "
          "SO_REUSEADDR on every start from now on, and the next restart binds at once.";
  }
  diagnosis.fix = fix;
}

}  // namespace

// ---------------------------------------------------------------- public

std::string_view class_slug(PortClass kind) {
  switch (kind) {
    case PortClass::free: return "free";
    case PortClass::ephemeral_range: return "ephemeral-range";
    case PortClass::reserved: return "reserved";
    case PortClass::listener: return "listener";
    case PortClass::reuseport_group: return "reuseport-group";
    case PortClass::other_user_reuseport: return "other-user-reuseport";
    case PortClass::wildcard_overlap: return "wildcard-overlap";
    case PortClass::dual_stack: return "dual-stack";
    case PortClass::connection: return "connection";
    case PortClass::time_wait: return "time-wait";
    case PortClass::privileged_port: return "privileged-port";
    case PortClass::address_not_local: return "address-not-local";
    case PortClass::unexplained: return "unexplained";
    case PortClass::could_not_run: return "could-not-run";
  }
  return "could-not-run";
}

std::string_view side_slug(Side side) {
  switch (side) {
    case Side::server: return "server";
    case Side::client: return "client";
    case Side::unknown: return "unknown";
  }
  return "unknown";
}

std::string_view overlap_slug(Overlap overlap) {
  switch (overlap) {
    case Overlap::none: return "none";
    case Overlap::same: return "same";
    case Overlap::wildcard: return "wildcard";
    case Overlap::dual_stack: return "dual-stack";
  }
  return "none";
}

std::string Trial::options_text() const {
  std::string text;
  if (reuse_address) text = "SO_REUSEADDR";
  if (reuse_port) text += std::string(text.empty() ? "" : "+") + "SO_REUSEPORT";
  if (v6only) text += std::string(text.empty() ? "" : "+") + "IPV6_V6ONLY=" + std::to_string(*v6only);
  return text.empty() ? "no options" : text;
}

Overlap overlap_of(const Endpoint& attempted, const Endpoint& bound) {
  SocketEntry entry;
  entry.local = bound;
  return overlap_with(attempted, false, entry);
}

std::optional<PortRange> parse_port_range(std::string_view text) {
  std::istringstream fields{std::string(text)};
  long low = 0;
  long high = 0;
  std::string rest;
  if (!(fields >> low >> high) || (fields >> rest) || low < 1 || high > 65535 || low > high) return std::nullopt;
  return PortRange{static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(high)};
}

std::optional<std::vector<PortRange>> parse_port_list(std::string_view text) {
  std::vector<PortRange> ranges;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty()) return ranges;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const auto item = text.substr(start, end - start);
    const auto dash = item.find('-');
    const auto low = parse_unsigned(item.substr(0, dash));
    const auto high = dash == std::string_view::npos ? low : parse_unsigned(item.substr(dash + 1));
    if (!low || !high || *low > 65535 || *high > 65535 || *low > *high) return std::nullopt;
    ranges.push_back({static_cast<std::uint16_t>(*low), static_cast<std::uint16_t>(*high)});
    start = end + 1;
  }
  return ranges;
}

std::string escape_for_terminal(std::string_view text) {
  std::string out;
  const auto hex = [&out](unsigned char byte) {
    std::array<char, 8> code{};
    std::snprintf(code.data(), code.size(), "\\x%02x", byte);
    out += code.data();
  };
  std::size_t index = 0;
  while (index < text.size()) {
    const auto byte = static_cast<unsigned char>(text[index]);
    if (byte == '\\') {
      out += "\\\\";
      ++index;
      continue;
    }
    if (byte < 0x20 || byte == 0x7f) {
      hex(byte);
      ++index;
      continue;
    }
    if (byte < 0x80) {
      out += static_cast<char>(byte);
      ++index;
      continue;
    }
    // A UTF-8 sequence: kept when well formed and not a C1 control (U+0080..U+009F).
    std::size_t length = byte >= 0xf0 && byte <= 0xf4 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc2 && byte <= 0xdf ? 2 : 0;
    bool valid = length > 0 && index + length <= text.size();
    for (std::size_t next = 1; valid && next < length; ++next) {
      valid = (static_cast<unsigned char>(text[index + next]) & 0xc0U) == 0x80U;
    }
    if (valid && byte == 0xc2 && static_cast<unsigned char>(text[index + 1]) < 0xa0) valid = false;
    if (!valid) {
      hex(byte);
      ++index;
      continue;
    }
    out.append(text.substr(index, length));
    index += length;
  }
  return out;
}

std::vector<std::string> wrap(std::string_view text, std::size_t width) {
  std::vector<std::string> rows;
  std::string row;
  std::istringstream words{std::string(text)};
  std::string word;
  // Columns, not bytes: a UTF-8 continuation byte takes no column of its own.
  const auto columns = [](std::string_view piece) {
    return static_cast<std::size_t>(std::count_if(
        piece.begin(), piece.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0U) != 0x80U; }));
  };
  while (words >> word) {
    while (columns(word) > width) {
      if (!row.empty()) rows.push_back(std::exchange(row, {}));
      std::size_t cut = 0;
      std::size_t taken = 0;
      while (cut < word.size() && (taken < width || (static_cast<unsigned char>(word[cut]) & 0xc0U) == 0x80U)) {
        if ((static_cast<unsigned char>(word[cut]) & 0xc0U) != 0x80U) ++taken;
        ++cut;
      }
      rows.push_back(word.substr(0, cut));
      word.erase(0, cut);
    }
    if (!row.empty() && columns(row) + 1 + columns(word) > width) rows.push_back(std::exchange(row, {}));
    row += (row.empty() ? "" : " ") + word;
  }
  if (!row.empty()) rows.push_back(row);
  return rows;
}

Diagnosis diagnose(const Endpoint& attempted, Transport transport) {
  Diagnosis diagnosis;
  diagnosis.attempted = attempted;
  diagnosis.transport = transport;
  diagnosis.own_uid = ::geteuid();
  diagnosis.sysctls = read_sysctls();
  const auto port = attempted.port();
  diagnosis.in_ephemeral_range = diagnosis.sysctls.ephemeral && diagnosis.sysctls.ephemeral->contains(port);
  diagnosis.in_reserved_ports = std::any_of(diagnosis.sysctls.reserved.begin(), diagnosis.sysctls.reserved.end(),
                                            [port](const PortRange& range) { return range.contains(port); });

  // The evidence that decides: four trial binds, one per option combination, and for the IPv6
  // wildcard one more with IPV6_V6ONLY=1 (does leaving IPv4 alone make room?).
  for (const auto& [reuse_address, reuse_port] :
       {std::pair{false, false}, std::pair{true, false}, std::pair{false, true}, std::pair{true, true}}) {
    diagnosis.trials.push_back(trial_bind(attempted, transport, reuse_address, reuse_port));
  }
  if (attempted.family() == AF_INET6 && attempted.is_wildcard()) {
    diagnosis.trials.push_back(trial_bind(attempted, transport, false, false, 1));
  }

  // The socket table right after the trials, and the processes behind its sockets.
  auto table = read_socket_table(transport);
  const bool attempted_v6only = diagnosis.sysctls.bindv6only.value_or(0) != 0;
  if (table) {
    std::set<unsigned long> inodes;
    for (const auto& entry : bound_to_port(*table, port)) {
      Holder holder;
      holder.socket = entry;
      holder.overlap = overlap_with(attempted, attempted_v6only, entry);
      holder.user = user_name(entry.uid);
      if (entry.inode != 0) inodes.insert(entry.inode);
      diagnosis.holders.push_back(std::move(holder));
    }
    const auto owners = processes_holding(inodes, diagnosis.unreadable_processes);
    for (auto& holder : diagnosis.holders) {
      const auto found = owners.find(holder.socket.inode);
      if (found == owners.end()) continue;
      for (const auto pid : found->second) holder.processes.push_back(inspect_process(pid));
    }
  } else {
    diagnosis.table_error = table.error();
  }

  // What this run cannot see.
  diagnosis.unseen.push_back(
      "Other network namespaces: each container with its own network has its own ports and socket table. "
      "They never block this bind, and they are not listed here.");
  if (diagnosis.unreadable_processes > 0) {
    // Without root these are other users' processes; as root inside a user namespace, the
    // processes of the namespaces above it.
    diagnosis.unseen.push_back(
        std::to_string(diagnosis.unreadable_processes) + " processes could not be inspected (" +
        (diagnosis.own_uid != 0
             ? "other users' processes, without root"
             : "not readable here even as root: a user namespace above this one, or no CAP_SYS_PTRACE") +
        "): a socket of theirs shows its uid here, but no pid or command.");
  }
  if (diagnosis.table_error) {
    diagnosis.unseen.push_back("The socket table could not be read (" + describe_outcome(*diagnosis.table_error) +
                               "): which sockets hold the port is unknown.");
  }
  if (transport == Transport::tcp) {
    diagnosis.unseen.push_back(
        "The trials stop at bind(): a scratch socket that listened could take a real client's connection.");
  } else {
    diagnosis.unseen.push_back(
        "A UDP trial that passed was bound for microseconds: it could have received a datagram meant for the "
        "port's holder.");
  }

  const auto& first = diagnosis.trials.front();
  if (!first.setup_call.empty()) {
    diagnosis.kind = PortClass::could_not_run;
    diagnosis.headline =
        "The trial bind could not be made: " + first.setup_call + " answered " + describe_outcome(first.outcome) + ".";
    diagnosis.fix = "None known: the trial did not reach bind().";
    return diagnosis;
  }
  if (!first.outcome) {
    classify_free(diagnosis);
    return diagnosis;
  }
  if (first.outcome.value() == EACCES) {
    diagnosis.kind = PortClass::privileged_port;
    const auto start = diagnosis.sysctls.unprivileged_port_start;
    diagnosis.headline = "bind() answered EACCES: port " + port_text(port) + " is below " +
                         (start ? "ip_unprivileged_port_start (" + std::to_string(*start) + ")"
                                : std::string("the unprivileged ports")) +
                         ", and this process may not bind it.";
    diagnosis.fix = "Use a port of " + (start ? std::to_string(*start) : std::string("1024")) +
                    " or more; or give the program CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep PROGRAM, "
                    "or AmbientCapabilities= in its systemd unit).";
    return diagnosis;
  }
  if (first.outcome.value() == EADDRNOTAVAIL) {
    diagnosis.kind = PortClass::address_not_local;
    diagnosis.headline =
        "bind() answered EADDRNOTAVAIL: no interface of this machine (in this network "
        "namespace) has the address " +
        attempted.address_text() + ".";
    diagnosis.fix =
        "Bind an address that `ip address` lists, or the wildcard (0.0.0.0 or [::]). For an address "
        "that comes up later, IP_FREEBIND lets the bind pass before it exists.";
    return diagnosis;
  }

  std::vector<const Holder*> live;
  std::vector<const Holder*> connections;
  std::vector<const Holder*> time_waits;
  for (const auto& holder : diagnosis.holders) {
    if (holder.overlap == Overlap::none) continue;
    if (is_live_bound(holder.socket)) {
      live.push_back(&holder);
    } else if (is_time_wait(holder.socket)) {
      time_waits.push_back(&holder);
    } else {
      connections.push_back(&holder);
    }
  }
  if (first.outcome.value() == EADDRINUSE && !live.empty()) {
    classify_live(diagnosis, live);
  } else if (first.outcome.value() == EADDRINUSE && !connections.empty()) {
    classify_connection(diagnosis, connections);
  } else if (first.outcome.value() == EADDRINUSE && !time_waits.empty()) {
    classify_time_wait(diagnosis, time_waits);
  } else {
    diagnosis.kind = PortClass::unexplained;
    diagnosis.headline = "bind() answered " + describe_outcome(first.outcome) +
                         ", but the socket table shows nothing on port " + port_text(port) + " that overlaps " +
                         attempted.text() + ".";
    diagnosis.fix = "Run again: whatever held the port may have ended in between.";
  }
  return diagnosis;
}

// ---------------------------------------------------------------- output

namespace {

// A paragraph: the first line starts with head, the others with `indent` spaces (by default as
// many as head is long), all wrapped within width.
void paragraph(std::vector<std::string>& lines, const std::string& head, std::string_view text, std::size_t width,
               std::optional<std::size_t> indent = std::nullopt) {
  const auto hanging = indent.value_or(head.size());
  const auto rows = wrap(text, width - std::max(head.size(), hanging));
  for (std::size_t index = 0; index < rows.size(); ++index) {
    lines.push_back((index == 0 ? head : std::string(hanging, ' ')) + rows[index]);
  }
  if (rows.empty()) lines.push_back(head);
}

std::string placement_words(const ProcessInfo& process) {
  switch (process.placement) {
    case Placement::host: return "in the same mount and network namespace as this doctor";
    case Placement::container: {
      std::string text = "in a container:";
      for (const auto& evidence : process.placement_evidence) text += " " + evidence + ";";
      text.pop_back();
      return text;
    }
    case Placement::unknown: break;
  }
  return "container or not: unknown (" + process.placement_evidence.front() + ")";
}

std::string socket_line(const Holder& holder) {
  std::string text = holder.socket.describe();
  // A TIME-WAIT entry has no owner left: sock_diag reports uid 0 for it, which means nothing.
  if (!is_time_wait(holder.socket)) text += "; uid " + std::to_string(holder.socket.uid) + " (" + holder.user + ")";
  if (holder.socket.v6only) text += std::string("; IPV6_V6ONLY=") + (*holder.socket.v6only ? "1" : "0");
  if (holder.overlap != Overlap::none) text += "; overlaps: " + std::string(overlap_slug(holder.overlap));
  return text;
}

}  // namespace

std::string render_text(const Diagnosis& diagnosis, std::size_t width) {
  std::vector<std::string> lines;
  const std::string transport = diagnosis.transport == Transport::tcp ? "TCP" : "UDP";
  const auto port = port_text(diagnosis.attempted.port());
  paragraph(lines, "", "bind() of " + transport + " " + diagnosis.attempted.text() + " on this machine, now:", width,
            0);
  paragraph(lines, "Class: ", std::string(class_slug(diagnosis.kind)), width, 2);
  paragraph(lines, "  ", diagnosis.headline, width);
  lines.emplace_back();

  if (diagnosis.table_error) {
    paragraph(lines, "", "Socket table: unreadable (" + describe_outcome(*diagnosis.table_error) + ").", width, 0);
  } else {
    paragraph(lines, "",
              "Sockets with local port " + port + " (" + transport + ", sock_diag)" +
                  (diagnosis.holders.empty() ? ": none." : ":"),
              width, 0);
    constexpr std::size_t kShown = 8;
    std::size_t shown = 0;
    for (const auto& holder : diagnosis.holders) {
      if (shown++ == kShown) {
        paragraph(lines, "  ",
                  "... and " + std::to_string(diagnosis.holders.size() - kShown) + " more (--json lists them all)",
                  width);
        break;
      }
      paragraph(lines, "  ", socket_line(holder), width, 4);
      for (const auto& process : holder.processes) {
        paragraph(lines, "    ",
                  "pid " + std::to_string(process.pid) + ", user " + process.user + ", parent " +
                      std::to_string(process.parent) + ": " +
                      (process.command_line.empty() ? "[" + process.command + "]" : process.command_line),
                  width, 6);
        paragraph(lines, "      ", placement_words(process), width, 8);
        if (!process.cgroup.empty() && process.cgroup != "/")
          paragraph(lines, "      ", "cgroup " + process.cgroup, width, 8);
        if (process.started_by_systemd) {
          paragraph(lines, "      ", "started by systemd (parent pid 1) as " + process.systemd_unit, width, 8);
        }
        if (process.systemd_pid1) paragraph(lines, "      ", "systemd itself: a socket unit", width, 8);
        if (process.listen_fds) {
          paragraph(lines, "      ",
                    "LISTEN_FDS=" + *process.listen_fds +
                        (process.listen_pid ? " LISTEN_PID=" + *process.listen_pid : std::string()) +
                        ": systemd socket activation",
                    width, 8);
        }
      }
      if (holder.processes.empty() && holder.socket.inode != 0) {
        paragraph(lines, "    ", "process: not visible from here", width, 6);
      }
      if (holder.processes.empty() && holder.socket.inode == 0 && is_time_wait(holder.socket)) {
        paragraph(lines, "    ", "process: none (the kernel keeps it)", width, 6);
      }
    }
  }

  paragraph(lines, "",
            "Trial binds of scratch sockets to " + diagnosis.attempted.text() + " (bind only, closed at once):", width,
            0);
  for (const auto& trial : diagnosis.trials) {
    // Short rows in two columns: no wrapping, which would fold the padding away.
    std::string row = "  " + trial.options_text();
    row.resize(std::max<std::size_t>(row.size() + 1, 30), ' ');
    lines.push_back(row + outcome_text(trial));
  }

  std::string settings = "ip_local_port_range ";
  if (diagnosis.sysctls.ephemeral) {
    settings += range_text(*diagnosis.sysctls.ephemeral) + " (" + port +
                (diagnosis.in_ephemeral_range ? " is inside)" : " is outside)");
  } else {
    settings += diagnosis.sysctls.ephemeral_text;
  }
  settings += "; ip_local_reserved_ports " +
              (diagnosis.sysctls.reserved_text.empty() ? std::string("empty") : diagnosis.sysctls.reserved_text);
  if (diagnosis.sysctls.reserved_readable) {
    settings += diagnosis.in_reserved_ports ? " (" + port + " is reserved)" : "";
  }
  if (diagnosis.sysctls.unprivileged_port_start) {
    settings += "; ip_unprivileged_port_start " + std::to_string(*diagnosis.sysctls.unprivileged_port_start);
  }
  if (diagnosis.attempted.family() == AF_INET6 && diagnosis.sysctls.bindv6only) {
    settings += "; bindv6only " + std::to_string(*diagnosis.sysctls.bindv6only);
  }
  paragraph(lines, "Sysctls: ", settings + ".", width);
  if (diagnosis.kind == PortClass::time_wait || diagnosis.kind == PortClass::connection) {
    paragraph(lines, "Side: ", std::string(side_slug(diagnosis.side)) + ": " + diagnosis.side_basis + ".", width);
  }
  lines.emplace_back();
  paragraph(lines, "Fix: ", diagnosis.fix, width);
  for (const auto& unseen : diagnosis.unseen) paragraph(lines, "Not seen: ", unseen, width, 10);

  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

std::string render_json(const Diagnosis& diagnosis) {
  std::vector<std::string> trials;
  for (const auto& trial : diagnosis.trials) {
    JsonObject item;
    item.add("options", trial.options_text())
        .add("reuseaddr", trial.reuse_address)
        .add("reuseport", trial.reuse_port)
        .add_raw("v6only", trial.v6only ? std::to_string(*trial.v6only) : "null")
        .add("call", trial.setup_call.empty() ? std::string("bind") : trial.setup_call)
        .add("outcome", outcome_name(trial.outcome));
    trials.push_back(item.text());
  }
  std::vector<std::string> sockets;
  for (const auto& holder : diagnosis.holders) {
    std::vector<std::string> processes;
    for (const auto& process : holder.processes) {
      JsonObject item;
      item.add("pid", static_cast<long long>(process.pid))
          .add("uid", process.uid)
          .add("user", process.user)
          .add("command", process.command)
          .add("command_line", process.command_line)
          .add("parent", static_cast<long long>(process.parent))
          .add("cgroup", process.cgroup)
          .add("placement", process.placement == Placement::host        ? "host"
                            : process.placement == Placement::container ? "container"
                                                                        : "unknown")
          .add_raw("placement_evidence", json_string_array(process.placement_evidence))
          .add("systemd_pid1", process.systemd_pid1)
          .add("environment_readable", process.environment_readable)
          .add_raw("listen_fds", process.listen_fds ? json_quote(*process.listen_fds) : "null")
          .add_raw("listen_pid", process.listen_pid ? json_quote(*process.listen_pid) : "null")
          .add("systemd_unit", process.systemd_unit)
          .add("started_by_systemd", process.started_by_systemd);
      processes.push_back(item.text());
    }
    JsonObject item;
    item.add("state", holder.socket.state_name())
        .add("local", holder.socket.local.text())
        .add("peer", holder.socket.remote.text())
        // A TIME-WAIT entry has no owner: sock_diag's uid 0 for it would read as root.
        .add_raw("uid", is_time_wait(holder.socket) ? "null" : std::to_string(holder.socket.uid))
        .add_raw("user", is_time_wait(holder.socket) ? "null" : json_quote(holder.user))
        .add("inode", static_cast<long long>(holder.socket.inode))
        .add_raw("v6only", holder.socket.v6only ? (*holder.socket.v6only ? "true" : "false") : "null")
        .add("timer_seconds", holder.socket.timer_seconds)
        .add("overlap", overlap_slug(holder.overlap))
        .add_raw("processes", json_array(processes));
    sockets.push_back(item.text());
  }
  const auto& sysctls = diagnosis.sysctls;
  JsonObject settings;
  settings.add("ip_local_port_range", sysctls.ephemeral_text)
      .add("ip_local_reserved_ports", sysctls.reserved_text)
      .add_raw("ip_unprivileged_port_start",
               sysctls.unprivileged_port_start ? std::to_string(*sysctls.unprivileged_port_start) : "null")
      .add_raw("bindv6only", sysctls.bindv6only ? std::to_string(*sysctls.bindv6only) : "null");
  JsonObject object;
  object.add("tool", "portreuse-doctor")
      .add("transport", diagnosis.transport == Transport::tcp ? "tcp" : "udp")
      .add("address", diagnosis.attempted.text())
      .add("port", static_cast<int>(diagnosis.attempted.port()))
      .add("class", class_slug(diagnosis.kind))
      .add("headline", diagnosis.headline)
      .add("fix", diagnosis.fix)
      .add("side", side_slug(diagnosis.side))
      .add("side_basis", diagnosis.side_basis)
      .add("time_wait_seconds_left", diagnosis.time_wait_left)
      .add("in_ephemeral_range", diagnosis.in_ephemeral_range)
      .add("in_reserved_ports", diagnosis.in_reserved_ports)
      .add("uid", diagnosis.own_uid)
      .add("unreadable_processes", diagnosis.unreadable_processes)
      .add_raw("trials", json_array(trials))
      .add_raw("sockets", json_array(sockets))
      .add_raw("socket_table_error", diagnosis.table_error ? json_quote(outcome_name(*diagnosis.table_error)) : "null")
      .add_raw("sysctls", settings.text())
      .add_raw("unseen", json_string_array(diagnosis.unseen));
  return object.text();
}

}  // namespace portreuse::doctor
