// Packet ladders: the segments of a step's own connections, captured on the loopback of a
// private network namespace, printed as a ladder and written to a pcap file.
//
// Used by the runner (--ladder, --pcap FILE) and by the Lab; experiments never include it. The
// program enters a private user and network namespace before its first step, so every process
// and socket of the run lives there and nothing else talks on that namespace's `lo`. An AF_PACKET
// socket bound to `lo` then sees exactly the run's traffic, without root on the host.
#pragma once

#include <sys/time.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "portreuse/errors.hpp"
#include "portreuse/fd.hpp"

namespace portreuse::wire {

// Moves this process into a new user and network namespace (unshare(CLONE_NEWUSER |
// CLONE_NEWNET)), maps its own uid and gid to themselves, and brings `lo` up. Must run before
// the process has threads or children. nullopt on success; otherwise why the namespace cannot be
// had, naming the call that failed and its errno (the process then stays where it was).
std::optional<std::string> enter_private_network();

// TCP flag bits as they are in the header's 13th byte.
enum Flag : std::uint8_t {
  fin = 0x01,
  syn = 0x02,
  rst = 0x04,
  psh = 0x08,
  ack = 0x10,
  urg = 0x20,
  ece = 0x40,
  cwr = 0x80
};
// "SYN ACK", "FIN ACK", "RST": the set bits in the order people say them.
std::string flag_words(std::uint8_t flags);

// One TCP segment seen on `lo`, as the kernel sent it.
struct Segment {
  timeval when{};
  std::string source;  // "127.0.0.1", "::1"
  std::string destination;
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  std::uint8_t flags = 0;
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint32_t payload = 0;       // data bytes in the segment
  std::string frame;               // the captured bytes (at most kSnapLength), for the pcap
  std::uint32_t frame_length = 0;  // the frame's real length
};

inline constexpr std::size_t kSnapLength = 256;  // headers and the start of the data

// Reads one Ethernet frame; nullopt unless it carries a whole TCP header (IPv4 or IPv6).
std::optional<Segment> parse_frame(std::string_view frame);

// An AF_PACKET socket on `lo`: nonblocking, with a bounded receive buffer.
class Capture {
 public:
  static Result<Capture> open_loopback();
  // Every TCP segment queued since the last drain that involves one of `ports`, in the order
  // they were sent. Each frame is seen twice on loopback (going out, coming in): the outgoing
  // copy is kept.
  std::vector<Segment> drain(const std::set<std::uint16_t>& ports);
  // Frames the kernel dropped since the last call because the buffer was full.
  unsigned dropped();

 private:
  explicit Capture(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// A classic pcap file (microsecond timestamps, LINKTYPE_ETHERNET: `lo` has an Ethernet header
// of zeros): the global header at open, one record per segment.
class PcapFile {
 public:
  static Result<PcapFile> create(const std::string& path);
  std::error_code append(const Segment& segment);

 private:
  struct Closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  explicit PcapFile(std::FILE* file) : file_(file) {}
  std::unique_ptr<std::FILE, Closer> file_;
};

// The run's capture: set up once by the runner, shared by every step's Lab.
class Wire {
 public:
  // Opens the pcap file (when a path is given). An error here is the user's: a bad path.
  static Result<Wire> prepare(const std::optional<std::string>& pcap_path, bool ladder);
  // Enters the private namespace and opens the capture; afterwards missing() says why not.
  void start();
  [[nodiscard]] bool capturing() const noexcept { return capture_.has_value(); }
  [[nodiscard]] bool ladder() const noexcept { return ladder_; }
  // Why there is no ladder (namespaces not allowed, the capture socket refused...).
  [[nodiscard]] const std::optional<std::string>& missing() const noexcept { return missing_; }
  // Why the pcap file stopped growing (a write failed), once it has.
  [[nodiscard]] const std::optional<std::string>& pcap_problem() const noexcept { return pcap_problem_; }
  std::vector<Segment> drain(const std::set<std::uint16_t>& ports, unsigned& dropped);

 private:
  Wire() = default;
  bool ladder_ = false;
  std::optional<Capture> capture_;
  std::optional<PcapFile> pcap_;
  std::optional<std::string> missing_;
  std::optional<std::string> pcap_problem_;
};

// One step's ladder: names the two ends of each connection (the end that sent the SYN is the
// client), keeps each end's initial sequence number so that seq and ack print relative to it, and
// measures time from the step's first segment.
class Ladder {
 public:
  // The rows for these segments (a header row whenever the connection changes), each within 60
  // columns; "client SYN", "server FIN ACK" per segment go to flags().
  std::vector<std::string> rows(const std::vector<Segment>& segments, const std::set<std::uint16_t>& ports);
  [[nodiscard]] const std::vector<std::string>& flags() const noexcept { return flags_; }
  // The same segments as a Mermaid sequence diagram (`sequenceDiagram`, which GitHub draws): one
  // arrow per segment, client to server or back, labelled like the ladder's row; a reset ends in
  // a cross. Empty when no segment was seen.
  [[nodiscard]] std::string mermaid() const;

 private:
  struct Drawn {  // one segment as the ladder drew it
    std::size_t connection = 0;
    bool from_client = true;
    std::uint8_t flags = 0;
    std::string label;  // "SYN ACK seq 0 ack 1"
  };
  std::vector<Drawn> drawn_;
  struct Connection {
    std::string client;  // "127.0.0.1"
    std::uint16_t client_port = 0;
    std::string server;
    std::uint16_t server_port = 0;
    std::optional<std::uint32_t> client_base;
    std::optional<std::uint32_t> server_base;
  };
  std::size_t connection_of(const Segment& segment, const std::set<std::uint16_t>& ports, bool& from_client);
  std::vector<Connection> connections_;
  std::optional<timeval> first_;
  std::optional<std::size_t> last_shown_;
  std::vector<std::string> flags_;
};

// What a Lab keeps for its step: the run's capture, the step's ports, its ladder.
struct StepWire {
  Wire* wire = nullptr;
  std::set<std::uint16_t> ports;
  Ladder ladder;
  bool shown = false;  // a ladder block was printed already in this step
};

}  // namespace portreuse::wire
