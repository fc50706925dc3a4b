#include "portreuse/wire.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "portreuse/lab.hpp"

#ifdef __linux__
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#endif

namespace portreuse::wire {
namespace {

std::uint16_t read16(std::string_view bytes, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(bytes[at]) << 8) |
                                    static_cast<unsigned char>(bytes[at + 1]));
}

std::uint32_t read32(std::string_view bytes, std::size_t at) {
  return (static_cast<std::uint32_t>(read16(bytes, at)) << 16) | read16(bytes, at + 2);
}

std::string address_text(int family, std::string_view bytes) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (::inet_ntop(family, bytes.data(), text.data(), text.size()) == nullptr) return "?";
  return text.data();
}

std::string endpoint_text(const std::string& address, std::uint16_t port) {
  const bool v6 = address.find(':') != std::string::npos;
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

#ifdef __linux__

std::error_code write_file(const char* path, const std::string& text) {
  const UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) return last_error();
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return last_error();
  return {};
}

std::error_code bring_loopback_up() {
  const UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!control) return last_error();
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", "lo");
  if (::ioctl(control.get(), SIOCGIFFLAGS, &request) != 0) return last_error();
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(control.get(), SIOCSIFFLAGS, &request) != 0) return last_error();
  return {};
}

#endif

}  // namespace

std::optional<std::string> enter_private_network() {
#ifndef __linux__
  return "network namespaces are a Linux feature; this system has none";
#else
  const auto uid = ::geteuid();
  const auto gid = ::getegid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    return "unshare(CLONE_NEWUSER | CLONE_NEWNET) returned " + describe_outcome(last_error()) +
           ": this user may not create namespaces here (user.max_user_namespaces, or a seccomp profile)";
  }
  // The same uid and gid inside as outside: the experiments see the user they run as (one that
  // checks for root still finds none), while this process holds the new namespace's
  // capabilities, which an AF_PACKET socket and `ip link set lo up` need. An unprivileged user
  // must deny setgroups before it may write a gid map (user_namespaces(7)).
  if (auto error = write_file("/proc/self/setgroups", "deny"); error && error.value() != ENOENT) {
    return "writing /proc/self/setgroups returned " + describe_outcome(error);
  }
  if (auto error = write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1")) {
    return "writing /proc/self/uid_map returned " + describe_outcome(error);
  }
  if (auto error = write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1")) {
    return "writing /proc/self/gid_map returned " + describe_outcome(error);
  }
  portreuse::lab::own_connection_table();
  if (auto error = bring_loopback_up()) {
    return "bringing lo up in the new namespace (SIOCSIFFLAGS) returned " + describe_outcome(error);
  }
  return std::nullopt;
#endif
}

std::string flag_words(std::uint8_t flags) {
  // The order people say them: SYN ACK, FIN ACK, PSH ACK, RST ACK.
  constexpr std::array<std::pair<std::uint8_t, const char*>, 8> kWords{
      {{syn, "SYN"}, {fin, "FIN"}, {rst, "RST"}, {psh, "PSH"}, {urg, "URG"}, {ack, "ACK"}, {ece, "ECE"}, {cwr, "CWR"}}};
  std::string words;
  for (const auto& [bit, word] : kWords) {
    if ((flags & bit) != 0) words += (words.empty() ? "" : " ") + std::string(word);
  }
  return words.empty() ? "none" : words;
}

std::optional<Segment> parse_frame(std::string_view frame) {
  constexpr std::size_t kEthernet = 14;
  if (frame.size() < kEthernet) return std::nullopt;
  Segment segment;
  std::size_t tcp = 0;
  std::size_t ip_payload = 0;  // bytes after the IP header, from the IP header's own length
  const auto type = read16(frame, 12);
  if (type == 0x0800) {
    if (frame.size() < kEthernet + 20) return std::nullopt;
    const std::size_t header = static_cast<std::size_t>(static_cast<unsigned char>(frame[kEthernet]) & 0x0f) * 4;
    const bool later_fragment = (read16(frame, kEthernet + 6) & 0x1fff) != 0;
    if (static_cast<unsigned char>(frame[kEthernet + 9]) != IPPROTO_TCP || later_fragment || header < 20) {
      return std::nullopt;
    }
    const std::size_t total = read16(frame, kEthernet + 2);
    if (total < header) return std::nullopt;
    segment.source = address_text(AF_INET, frame.substr(kEthernet + 12, 4));
    segment.destination = address_text(AF_INET, frame.substr(kEthernet + 16, 4));
    tcp = kEthernet + header;
    ip_payload = total - header;
  } else if (type == 0x86dd) {
    if (frame.size() < kEthernet + 40) return std::nullopt;
    if (static_cast<unsigned char>(frame[kEthernet + 6]) != IPPROTO_TCP) return std::nullopt;  // no extension headers
    segment.source = address_text(AF_INET6, frame.substr(kEthernet + 8, 16));
    segment.destination = address_text(AF_INET6, frame.substr(kEthernet + 24, 16));
    tcp = kEthernet + 40;
    ip_payload = read16(frame, kEthernet + 4);
  } else {
    return std::nullopt;
  }
  if (frame.size() < tcp + 20) return std::nullopt;
  const std::size_t offset = static_cast<std::size_t>(static_cast<unsigned char>(frame[tcp + 12]) >> 4) * 4;
  if (offset < 20 || ip_payload < offset) return std::nullopt;
  segment.source_port = read16(frame, tcp);
  segment.destination_port = read16(frame, tcp + 2);
  segment.seq = read32(frame, tcp + 4);
  segment.ack = read32(frame, tcp + 8);
  segment.flags = static_cast<std::uint8_t>(frame[tcp + 13]);
  segment.payload = static_cast<std::uint32_t>(ip_payload - offset);
  segment.frame = std::string(frame);
  segment.frame_length = static_cast<std::uint32_t>(frame.size());
  return segment;
}

// ---- Capture -----------------------------------------------------------------------------

Result<Capture> Capture::open_loopback() {
#ifndef __linux__
  return make_error(ENOSYS);
#else
  // Protocol 0: the socket receives nothing until bind() names lo and ETH_P_ALL. Created with
  // ETH_P_ALL it would listen on every interface at once, and bind() would first have to unhook
  // it again, waiting for an RCU grace period (milliseconds).
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return last_error();
  // Bounded: a step that floods the loopback loses frames (counted by dropped()), never memory.
  const int buffer = 1 << 20;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  const int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMP, &on, sizeof on) != 0) return last_error();
  sockaddr_ll where{};
  where.sll_family = AF_PACKET;
  where.sll_protocol = htons(ETH_P_ALL);
  where.sll_ifindex = static_cast<int>(::if_nametoindex("lo"));
  if (where.sll_ifindex == 0) return last_error();
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&where), sizeof where) != 0) return last_error();
  Capture capture(std::move(fd));
  (void)capture.dropped();  // the counters start now
  return capture;
#endif
}

std::vector<Segment> Capture::drain(const std::set<std::uint16_t>& ports) {
  std::vector<Segment> segments;
#ifdef __linux__
  for (;;) {
    std::array<char, kSnapLength> bytes{};
    iovec part{bytes.data(), bytes.size()};
    sockaddr_ll from{};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(timeval))> control{};
    msghdr message{};
    message.msg_name = &from;
    message.msg_namelen = sizeof from;
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    // MSG_TRUNC: the frame's real length, even when only its start fits.
    const auto got = ::recvmsg(fd_.get(), &message, MSG_TRUNC);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;  // EAGAIN: nothing more queued
    // On loopback every frame is seen going out and again coming in; the outgoing copy is
    // queued at the moment of sending, so it is the one kept.
    if (from.sll_pkttype != PACKET_OUTGOING) continue;
    const auto kept = std::min(static_cast<std::size_t>(got), bytes.size());
    auto segment = parse_frame(std::string_view(bytes.data(), kept));
    if (!segment) continue;
    if (ports.count(segment->source_port) == 0 && ports.count(segment->destination_port) == 0) continue;
    segment->frame_length = static_cast<std::uint32_t>(got);
    bool stamped = false;
    for (auto* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_TIMESTAMP) {
        std::memcpy(&segment->when, CMSG_DATA(header), sizeof segment->when);
        stamped = true;
      }
    }
    if (!stamped) ::gettimeofday(&segment->when, nullptr);
    segments.push_back(std::move(*segment));
  }
#else
  (void)ports;
#endif
  return segments;
}

unsigned Capture::dropped() {
#ifdef __linux__
  tpacket_stats stats{};
  socklen_t length = sizeof stats;
  // Reading the statistics resets them.
  if (::getsockopt(fd_.get(), SOL_PACKET, PACKET_STATISTICS, &stats, &length) == 0) return stats.tp_drops;
#endif
  return 0;
}

// ---- PcapFile ----------------------------------------------------------------------------

namespace {

template <typename T>
void put(std::string& bytes, T value) {
  bytes.append(reinterpret_cast<const char*>(&value), sizeof value);  // host order: the magic says which
}

}  // namespace

Result<PcapFile> PcapFile::create(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "wbe");
  if (file == nullptr) return last_error();
  PcapFile pcap(file);
  std::string header;
  put<std::uint32_t>(header, 0xa1b2c3d4);  // microsecond timestamps
  put<std::uint16_t>(header, 2);
  put<std::uint16_t>(header, 4);
  put<std::int32_t>(header, 0);   // times are UTC
  put<std::uint32_t>(header, 0);  // accuracy
  put<std::uint32_t>(header, kSnapLength);
  put<std::uint32_t>(header, 1);  // LINKTYPE_ETHERNET
  if (std::fwrite(header.data(), 1, header.size(), file) != header.size() || std::fflush(file) != 0) {
    return last_error();
  }
  return pcap;
}

std::error_code PcapFile::append(const Segment& segment) {
  std::string record;
  put<std::uint32_t>(record, static_cast<std::uint32_t>(segment.when.tv_sec));
  put<std::uint32_t>(record, static_cast<std::uint32_t>(segment.when.tv_usec));
  put<std::uint32_t>(record, static_cast<std::uint32_t>(segment.frame.size()));
  put<std::uint32_t>(record, segment.frame_length);
  record += segment.frame;
  if (std::fwrite(record.data(), 1, record.size(), file_.get()) != record.size() || std::fflush(file_.get()) != 0) {
    return last_error();
  }
  return {};
}

// ---- Wire --------------------------------------------------------------------------------

Result<Wire> Wire::prepare(const std::optional<std::string>& pcap_path, bool ladder) {
  Wire wire;
  wire.ladder_ = ladder;
  if (pcap_path) {
    auto pcap = PcapFile::create(*pcap_path);
    if (!pcap) return pcap.error();
    wire.pcap_ = std::move(*pcap);
  }
  return wire;
}

void Wire::start() {
  if (auto why = enter_private_network()) {
    missing_ = *why + "; the steps ran as usual, in this system's own network";
    return;
  }
  auto capture = Capture::open_loopback();
  if (!capture) {
    missing_ = "an AF_PACKET socket bound to lo (ETH_P_ALL) returned " + describe_outcome(capture.error());
    return;
  }
  capture_ = std::move(*capture);
}

std::vector<Segment> Wire::drain(const std::set<std::uint16_t>& ports, unsigned& dropped) {
  dropped = 0;
  if (!capture_) return {};
  auto segments = capture_->drain(ports);
  dropped = capture_->dropped();
  if (pcap_) {
    for (const auto& segment : segments) {
      if (auto error = pcap_->append(segment)) {
        pcap_problem_ = "writing the pcap file failed: " + describe_outcome(error) + "; it ends there";
        pcap_.reset();
        break;
      }
    }
  }
  return segments;
}

// ---- Ladder ------------------------------------------------------------------------------

namespace {

constexpr std::size_t kTimeWidth = 7;    // "  0.123"
constexpr std::size_t kArrowWidth = 26;  // "|-- SYN ACK ------------>|"

std::string arrow(const std::string& label, bool to_server) {
  const std::size_t fill = kArrowWidth > label.size() + 7 ? kArrowWidth - label.size() - 7 : 1;
  if (to_server) return "|-- " + label + " " + std::string(fill, '-') + ">|";
  return "|<" + std::string(fill, '-') + " " + label + " --|";
}

double milliseconds_between(const timeval& from, const timeval& to) {
  return static_cast<double>(to.tv_sec - from.tv_sec) * 1000.0 +
         static_cast<double>(to.tv_usec - from.tv_usec) / 1000.0;
}

}  // namespace

std::size_t Ladder::connection_of(const Segment& segment, const std::set<std::uint16_t>& ports, bool& from_client) {
  for (std::size_t index = 0; index < connections_.size(); ++index) {
    const auto& known = connections_[index];
    const bool forward = segment.source == known.client && segment.source_port == known.client_port &&
                         segment.destination == known.server && segment.destination_port == known.server_port;
    const bool backward = segment.source == known.server && segment.source_port == known.server_port &&
                          segment.destination == known.client && segment.destination_port == known.client_port;
    if (forward || backward) {
      from_client = forward;
      return index;
    }
  }
  // The end that sends the SYN is the client; without a SYN in sight, the end on the step's port
  // is the server.
  const bool syn_only = (segment.flags & (syn | ack)) == syn;
  const bool syn_ack = (segment.flags & (syn | ack)) == (syn | ack);
  const bool to_step_port = ports.count(segment.destination_port) > 0 && ports.count(segment.source_port) == 0;
  from_client = syn_only || (!syn_ack && (to_step_port || ports.count(segment.source_port) == 0));
  Connection connection;
  connection.client = from_client ? segment.source : segment.destination;
  connection.client_port = from_client ? segment.source_port : segment.destination_port;
  connection.server = from_client ? segment.destination : segment.source;
  connection.server_port = from_client ? segment.destination_port : segment.source_port;
  connections_.push_back(std::move(connection));
  return connections_.size() - 1;
}

std::vector<std::string> Ladder::rows(const std::vector<Segment>& segments, const std::set<std::uint16_t>& ports) {
  std::vector<std::string> shown;
  for (const auto& segment : segments) {
    if (!first_) first_ = segment.when;
    bool from_client = true;
    const std::size_t index = connection_of(segment, ports, from_client);
    auto& connection = connections_[index];
    if (!last_shown_ || *last_shown_ != index) {
      const std::string left =
          std::string(kTimeWidth - 2, ' ') + "ms  client " + endpoint_text(connection.client, connection.client_port);
      const std::string right = "server " + endpoint_text(connection.server, connection.server_port);
      const std::size_t end = kTimeWidth + 2 + kArrowWidth;
      const std::size_t gap = end > left.size() + right.size() + 2 ? end - left.size() - right.size() : 2;
      shown.push_back(left + std::string(gap, ' ') + right);
      last_shown_ = index;
    }
    // Sequence numbers count from each end's first (the SYN's); acknowledgements from the other end's.
    auto& own = from_client ? connection.client_base : connection.server_base;
    auto& other = from_client ? connection.server_base : connection.client_base;
    if (!own) own = segment.seq;
    if (!other && (segment.flags & ack) != 0) other = segment.ack - 1;
    const std::string label = flag_words(segment.flags);
    std::array<char, 16> time{};
    std::snprintf(time.data(), time.size(), "%*.3f", static_cast<int>(kTimeWidth),
                  milliseconds_between(*first_, segment.when));
    std::string row =
        std::string(time.data()) + "  " + arrow(label, from_client) + "  seq " + std::to_string(segment.seq - *own);
    if ((segment.flags & ack) != 0) row += " ack " + std::to_string(segment.ack - *other);
    if (segment.payload > 0) row += " len " + std::to_string(segment.payload);
    std::string numbers = "seq " + std::to_string(segment.seq - *own);
    if ((segment.flags & ack) != 0) numbers += " ack " + std::to_string(segment.ack - *other);
    if (segment.payload > 0) numbers += " len " + std::to_string(segment.payload);
    drawn_.push_back(Drawn{index, from_client, segment.flags, label + " " + numbers});
    shown.push_back(std::move(row));
    flags_.push_back(std::string(from_client ? "client " : "server ") + label);
  }
  return shown;
}

std::string Ladder::mermaid() const {
  if (drawn_.empty()) return {};
  // Each connection's client is a participant of its own (C1, C2...); a server that several
  // connections reach is one participant (S1...).
  std::vector<std::string> servers;
  std::vector<std::size_t> server_of(connections_.size(), 0);
  std::string diagram = "sequenceDiagram\n";
  std::vector<bool> declared(connections_.size(), false);
  constexpr std::size_t kMostArrows = 40;  // as many as the ladder shows; the pcap file has them all
  std::size_t arrows = 0;
  for (const auto& segment : drawn_) {
    const auto& connection = connections_[segment.connection];
    if (!declared[segment.connection]) {
      // The client on the left, as in the ladder: Mermaid places participants as declared.
      diagram += "    participant C" + std::to_string(segment.connection + 1) + " as client " +
                 endpoint_text(connection.client, connection.client_port) + "\n";
      const auto server = endpoint_text(connection.server, connection.server_port);
      auto found = std::find(servers.begin(), servers.end(), server);
      if (found == servers.end()) {
        servers.push_back(server);
        diagram += "    participant S" + std::to_string(servers.size()) + " as server " + server + "\n";
        found = servers.end() - 1;
      }
      server_of[segment.connection] = static_cast<std::size_t>(found - servers.begin()) + 1;
      declared[segment.connection] = true;
    }
    if (arrows == kMostArrows) {
      diagram += "    Note over C" + std::to_string(segment.connection + 1) + ": " +
                 std::to_string(drawn_.size() - kMostArrows) + " more segments, not drawn\n";
      break;
    }
    ++arrows;
    const auto client = "C" + std::to_string(segment.connection + 1);
    const auto server = "S" + std::to_string(server_of[segment.connection]);
    // A reset ends the connection: its arrow ends in a cross.
    const char* arrow = (segment.flags & rst) != 0 ? "-x" : "->>";
    diagram += "    " + (segment.from_client ? client : server) + arrow + (segment.from_client ? server : client) +
               ": " + segment.label + "\n";
  }
  return diagram;
}

}  // namespace portreuse::wire
