#include "portreuse/socket_table.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#endif

#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace portreuse {
namespace {

std::optional<unsigned long> parse_hex(std::string_view text) {
  unsigned long value = 0;
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value, 16);
  if (error != std::errc{} || stop != end) return std::nullopt;
  return value;
}

// "0100007F:9C7B" (IPv4) or 32 hex digits ":9C7B" (IPv6). The kernel prints each 32-bit word
// of the address as the host sees it in memory, so copying the words back restores the bytes.
std::optional<Endpoint> parse_proc_endpoint(std::string_view text, int family) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto port = parse_hex(text.substr(colon + 1));
  if (!port || *port > 0xFFFF) return std::nullopt;
  const auto address = text.substr(0, colon);
  if (family == AF_INET) {
    if (address.size() != 8) return std::nullopt;
    const auto word = parse_hex(address);
    if (!word) return std::nullopt;
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<std::uint16_t>(*port));
    const auto raw = static_cast<std::uint32_t>(*word);
    std::memcpy(&v4.sin_addr, &raw, sizeof raw);
    return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  if (address.size() != 32) return std::nullopt;
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(static_cast<std::uint16_t>(*port));
  for (std::size_t index = 0; index < 4; ++index) {
    const auto word = parse_hex(address.substr(index * 8, 8));
    if (!word) return std::nullopt;
    const auto raw = static_cast<std::uint32_t>(*word);
    std::memcpy(&v6.sin6_addr.s6_addr[index * 4], &raw, sizeof raw);
  }
  return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t position = 0;
  while (position < line.size()) {
    while (position < line.size() && (line[position] == ' ' || line[position] == '\t')) ++position;
    const auto start = position;
    while (position < line.size() && line[position] != ' ' && line[position] != '\t') ++position;
    if (position > start) fields.push_back(line.substr(start, position - start));
  }
  return fields;
}

std::string format_seconds(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f s", seconds);
  return text.data();
}

}  // namespace

std::string SocketEntry::state_name() const {
  if (transport == Transport::udp) return state == TcpState::established ? "ESTAB" : "UNCONN";
  switch (state) {
    case TcpState::established: return "ESTAB";
    case TcpState::syn_sent: return "SYN-SENT";
    case TcpState::syn_recv: return "SYN-RECV";
    case TcpState::fin_wait1: return "FIN-WAIT-1";
    case TcpState::fin_wait2: return "FIN-WAIT-2";
    case TcpState::time_wait: return "TIME-WAIT";
    case TcpState::close: return "CLOSE";
    case TcpState::close_wait: return "CLOSE-WAIT";
    case TcpState::last_ack: return "LAST-ACK";
    case TcpState::listen: return "LISTEN";
    case TcpState::closing: return "CLOSING";
    case TcpState::new_syn_recv: return "NEW-SYN-RECV";
  }
  return "UNKNOWN";
}

std::string SocketEntry::describe() const {
  std::string text = state_name();
  text.resize(std::max<std::size_t>(text.size(), 11), ' ');
  text += local.text();
  const bool has_peer = remote.port() != 0;
  if (has_peer) text += " <-> " + remote.text();
  if (timer == TimerKind::time_wait) text += ", " + format_seconds(timer_seconds) + " left";
  return text;
}

std::optional<SocketEntry> parse_proc_net_line(std::string_view line, int family, Transport transport,
                                               long ticks_per_second) {
  // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
  const auto fields = split_fields(line);
  if (fields.size() < 10 || fields[0].empty() || fields[0].back() != ':') return std::nullopt;
  auto local = parse_proc_endpoint(fields[1], family);
  auto remote = parse_proc_endpoint(fields[2], family);
  const auto state = parse_hex(fields[3]);
  const auto timer_colon = fields[5].find(':');
  if (!local || !remote || !state || timer_colon == std::string_view::npos) return std::nullopt;
  const auto timer = parse_hex(fields[5].substr(0, timer_colon));
  const auto ticks = parse_hex(fields[5].substr(timer_colon + 1));
  if (!timer || !ticks) return std::nullopt;
  unsigned long uid = 0;
  unsigned long inode = 0;
  if (std::from_chars(fields[7].data(), fields[7].data() + fields[7].size(), uid).ec != std::errc{} ||
      std::from_chars(fields[9].data(), fields[9].data() + fields[9].size(), inode).ec != std::errc{}) {
    return std::nullopt;
  }
  SocketEntry entry;
  entry.transport = transport;
  entry.state = static_cast<TcpState>(*state);
  entry.local = *local;
  entry.remote = *remote;
  entry.timer = static_cast<TimerKind>(*timer);
  entry.timer_seconds =
      ticks_per_second > 0 ? static_cast<double>(*ticks) / static_cast<double>(ticks_per_second) : 0.0;
  entry.uid = static_cast<unsigned>(uid);
  entry.inode = inode;
  return entry;
}

namespace {

#ifdef __linux__
Endpoint diag_endpoint(int family, const __be32* address, __be16 port) {
  if (family == AF_INET) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = port;
    std::memcpy(&v4.sin_addr, address, sizeof v4.sin_addr);
    return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = port;
  std::memcpy(&v6.sin6_addr, address, sizeof v6.sin6_addr);
  return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
}

// NLMSG_OK without the macro's comparison of the unsigned message length with a signed int.
bool whole_message_left(const nlmsghdr* header, int left) {
  return left >= static_cast<int>(sizeof(nlmsghdr)) && header->nlmsg_len >= sizeof(nlmsghdr) &&
         header->nlmsg_len <= static_cast<unsigned>(left);
}

// One sock_diag dump of a family and protocol: every state, or only listeners.
std::error_code dump_with_netlink(int family, Transport transport, bool listeners_only,
                                  std::vector<SocketEntry>& table) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return last_error();
  const UniqueFd owner(fd);
  const timeval deadline{1, 0};  // a dump of this namespace's sockets takes well under that
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.request.sdiag_family = static_cast<std::uint8_t>(family);
  message.request.sdiag_protocol = transport == Transport::tcp ? IPPROTO_TCP : IPPROTO_UDP;
  message.request.idiag_states = listeners_only ? 1U << static_cast<int>(TcpState::listen) : ~0U;
  if (::send(fd, &message, sizeof message, 0) < 0) return last_error();
  std::vector<char> buffer(1 << 16);
  for (;;) {
    const auto received = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (received == 0) return make_error(EIO);
    auto left = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); whole_message_left(header, left);
         header = NLMSG_NEXT(header, left)) {
      if (header->nlmsg_type == NLMSG_DONE) return {};
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto* failure = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
        return make_error(failure->error < 0 ? -failure->error : EIO);
      }
      const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
      SocketEntry entry;
      entry.transport = transport;
      entry.state = static_cast<TcpState>(diag->idiag_state);
      entry.local = diag_endpoint(family, diag->id.idiag_src, diag->id.idiag_sport);
      entry.remote = diag_endpoint(family, diag->id.idiag_dst, diag->id.idiag_dport);
      entry.timer = static_cast<TimerKind>(diag->idiag_timer);
      entry.timer_seconds = static_cast<double>(diag->idiag_expires) / 1000.0;
      entry.uid = diag->idiag_uid;
      entry.inode = diag->idiag_inode;
      // The attributes follow the message; the kernel adds IPV6_V6ONLY for IPv6 sockets that
      // listen or are only bound, which is what decides whether [::] also takes IPv4.
      auto attributes_left = static_cast<int>(header->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(sizeof *diag));
      for (const auto* attribute = reinterpret_cast<const rtattr*>(diag + 1); RTA_OK(attribute, attributes_left);
           attribute = RTA_NEXT(attribute, attributes_left)) {
        if (attribute->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(attribute) >= 1) {
          entry.v6only = *static_cast<const std::uint8_t*>(RTA_DATA(attribute)) != 0;
        }
      }
      table.push_back(entry);
    }
  }
}
#endif

Result<std::vector<SocketEntry>> read_with_netlink(Transport transport, Ipv6Rows ipv6) {
#ifdef __linux__
  std::vector<SocketEntry> table;
  if (auto error = dump_with_netlink(AF_INET, transport, false, table)) return error;
  // No IPv6 in this kernel is not a failure: there are simply no IPv6 sockets.
  const bool listeners_only = transport == Transport::tcp && ipv6 == Ipv6Rows::listeners;
  if (auto error = dump_with_netlink(AF_INET6, transport, listeners_only, table);
      error && error.value() != ENOENT && error.value() != EAFNOSUPPORT) {
    return error;
  }
  return table;
#else
  (void)transport;
  (void)ipv6;
  return make_error(ENOSYS);
#endif
}

// The whole file, or the errno that open() or read() gave: never a made-up one.
Result<std::string> read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return last_error();
  const UniqueFd owned(fd);
  std::string text;
  std::array<char, 8192> chunk{};
  for (;;) {
    const auto got = ::read(fd, chunk.data(), chunk.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return last_error();
    if (got == 0) return text;
    text.append(chunk.data(), static_cast<std::size_t>(got));
  }
}

Result<std::vector<SocketEntry>> read_from_proc(Transport transport) {
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  const char* const base = transport == Transport::tcp ? "/proc/net/tcp" : "/proc/net/udp";
  std::vector<SocketEntry> table;
  std::error_code first_failure;
  bool any_file = false;
  for (const auto& [suffix, family] : {std::pair{"", AF_INET}, std::pair{"6", AF_INET6}}) {
    auto text = read_whole_file(std::string(base) + suffix);
    if (!text) {
      // No tcp6 when IPv6 is off; any other failure is reported if nothing could be read.
      if (!first_failure && text.error().value() != ENOENT) first_failure = text.error();
      continue;
    }
    any_file = true;
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
      if (auto entry = parse_proc_net_line(line, family, transport, ticks_per_second)) table.push_back(*entry);
    }
  }
  if (!any_file) return first_failure ? first_failure : make_error(ENOENT);
  return table;
}

TableSource source_from_environment(TableSource requested) {
  if (requested != TableSource::automatic) return requested;
  const char* chosen = std::getenv("PORTREUSE_SOCKET_TABLE");
  if (chosen == nullptr) return requested;
  if (std::string_view(chosen) == "proc") return TableSource::proc;
  if (std::string_view(chosen) == "netlink") return TableSource::netlink;
  return requested;
}

}  // namespace

Result<std::vector<SocketEntry>> read_socket_table(Transport transport, TableSource source, Ipv6Rows ipv6) {
  switch (source_from_environment(source)) {
    case TableSource::proc: return read_from_proc(transport);
    case TableSource::netlink: return read_with_netlink(transport, ipv6);
    case TableSource::automatic: break;
  }
  auto table = read_with_netlink(transport, ipv6);
  if (table) return table;
  return read_from_proc(transport);
}

std::vector<SocketEntry> bound_to_port(const std::vector<SocketEntry>& table, std::uint16_t port) {
  std::vector<SocketEntry> found;
  for (const auto& entry : table) {
    if (entry.local.port() == port) found.push_back(entry);
  }
  return found;
}

std::vector<SocketEntry> involving_port(const std::vector<SocketEntry>& table, std::uint16_t port) {
  std::vector<SocketEntry> found;
  for (const auto& entry : table) {
    if (entry.local.port() == port || entry.remote.port() == port) found.push_back(entry);
  }
  return found;
}

std::optional<SocketOwner> find_socket_owner(unsigned long inode) {
  if (inode == 0) return std::nullopt;
  const std::string wanted = "socket:[" + std::to_string(inode) + "]";
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return std::nullopt;
  std::optional<SocketOwner> owner;
  while (!owner) {
    const dirent* process = ::readdir(proc);
    if (process == nullptr) break;
    if (process->d_name[0] < '0' || process->d_name[0] > '9') continue;
    const std::string fd_dir = std::string("/proc/") + process->d_name + "/fd";
    DIR* fds = ::opendir(fd_dir.c_str());
    if (fds == nullptr) continue;  // gone, or not ours to look at
    while (const dirent* fd = ::readdir(fds)) {
      std::array<char, 64> target{};
      const auto path = fd_dir + "/" + fd->d_name;
      const auto length = ::readlink(path.c_str(), target.data(), target.size() - 1);
      if (length > 0 && wanted == std::string_view(target.data(), static_cast<std::size_t>(length))) {
        SocketOwner found;
        found.pid = static_cast<pid_t>(std::stol(process->d_name));
        std::ifstream comm(std::string("/proc/") + process->d_name + "/comm");
        std::getline(comm, found.command);
        owner = found;
        break;
      }
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  return owner;
}

}  // namespace portreuse
