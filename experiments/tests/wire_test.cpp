// Packet ladders: the segments a step captured on the private namespace's lo tell the same story
// as its calls and its socket table (who sent the first FIN, who holds the TIME_WAIT), a pcap file
// holds the same flags for tcpdump, and a system without namespaces still runs the step.
#include "portreuse/wire.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "portreuse/json.hpp"
#include "portreuse/socket_table.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// The strings of a flat JSON array of strings: ["client SYN","server SYN ACK"].
std::vector<std::string> string_array(const std::string& json) {
  std::vector<std::string> texts;
  std::size_t at = 0;
  while ((at = json.find('"', at)) != std::string::npos) {
    const auto end = json.find('"', at + 1);
    if (end == std::string::npos) break;
    texts.push_back(json.substr(at + 1, end - at - 1));
    at = end + 1;
  }
  return texts;
}

// "server FIN ACK" -> {"server", bits}
struct Sent {
  std::string side;
  std::uint8_t flags = 0;
};

std::uint8_t flag_bits(std::istringstream& words) {
  std::uint8_t bits = 0;
  std::string word;
  while (words >> word) {
    for (std::uint8_t bit = 1; bit != 0; bit = static_cast<std::uint8_t>(bit << 1)) {
      if (wire::flag_words(bit) == word) bits = static_cast<std::uint8_t>(bits | bit);
    }
  }
  return bits;
}

std::vector<Sent> sent_segments(const std::vector<std::string>& texts) {
  std::vector<Sent> sent;
  for (const auto& text : texts) {
    std::istringstream words(text);
    Sent segment;
    words >> segment.side;
    segment.flags = flag_bits(words);
    sent.push_back(segment);
  }
  return sent;
}

// The side that sent the first FIN; empty when nobody did.
std::string first_fin(const std::vector<Sent>& sent) {
  for (const auto& segment : sent) {
    if ((segment.flags & wire::fin) != 0) return segment.side;
  }
  return {};
}

bool any_with(const std::vector<Sent>& sent, std::uint8_t flag) {
  for (const auto& segment : sent) {
    if ((segment.flags & flag) != 0) return true;
  }
  return false;
}

// tcpdump's "[S.]", "[F.]", "[R]": one letter per flag, "." for ACK.
std::uint8_t tcpdump_flags(std::string_view letters) {
  std::uint8_t bits = 0;
  for (const char letter : letters) {
    switch (letter) {
      case 'F': bits |= wire::fin; break;
      case 'S': bits |= wire::syn; break;
      case 'R': bits |= wire::rst; break;
      case 'P': bits |= wire::psh; break;
      case 'U': bits |= wire::urg; break;
      case 'E': bits |= wire::ece; break;
      case 'W': bits |= wire::cwr; break;
      case '.': bits |= wire::ack; break;
      default: break;
    }
  }
  return bits;
}

std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream folders(path != nullptr ? path : "/usr/bin:/bin:/usr/sbin:/sbin");
  std::string folder;
  while (std::getline(folders, folder, ':')) {
    const auto candidate = folder + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  for (const char* folder_name : {"/usr/sbin", "/sbin"}) {  // tcpdump often lives there
    const auto candidate = std::string(folder_name) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// Runs 02 with the ladder; nullopt (after saying why) when this system cannot capture.
std::optional<Record> run_02_with_ladder(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> arguments{"--ladder"};
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  const auto records = run_experiment_json("02", arguments);
  // The ladder changes nothing in the outcome: the same row of the one table of outcomes.
  check_steps(records, "02");
  const auto* restart = find_step(records, "restart-after-server-close");
  REQUIRE(restart != nullptr);
  REQUIRE(restart->count("segments") == 1);
  if (restart->at("segments") == "null") {
    REQUIRE(restart->count("ladder_missing") == 1);
    WARN_MESSAGE(false, "no ladder on this system: " << restart->at("ladder_missing"));
    return std::nullopt;
  }
  return *restart;
}

TEST_CASE("wire: 02's ladder shows the server's FIN first and the server holding the TIME_WAIT") {
  const auto restart = run_02_with_ladder();
  if (!restart) return;
  const auto sent = sent_segments(string_array(restart->at("segments")));
  REQUIRE(sent.size() >= 3);
  // The three-way handshake opens it: the client's SYN, the server's SYN ACK, the client's ACK.
  CHECK(sent[0].side == "client");
  CHECK(sent[0].flags == wire::syn);
  CHECK(sent[1].side == "server");
  CHECK(sent[1].flags == (wire::syn | wire::ack));
  CHECK(sent[2].side == "client");
  CHECK(sent[2].flags == wire::ack);
  // The server closes first (the client read its end of stream): the first FIN is the server's,
  // and the TIME_WAIT that blocks the restart is the one the first FIN's sender holds.
  CHECK(first_fin(sent) == "server");
  CHECK(restart->at("time_wait_side") == first_fin(sent));
  // An orderly close: both ends send a FIN, nobody resets.
  CHECK(any_with(sent, wire::fin));
  CHECK_FALSE(any_with(sent, wire::rst));
  std::size_t fins = 0;
  for (const auto& segment : sent) fins += (segment.flags & wire::fin) != 0 ? 1 : 0;
  CHECK(fins == 2);
}

// Runs an experiment with the ladder and returns one step's segments; nullopt (after saying
// why) when this system cannot capture.
std::optional<std::vector<Sent>> ladder_of(const std::string& number, const std::string& step) {
  const auto records = run_experiment_json(number, {"--ladder"});
  check_steps(records, number);
  const auto* record = find_step(records, step);
  REQUIRE(record != nullptr);
  REQUIRE(record->count("segments") == 1);
  if (record->at("segments") == "null") {
    REQUIRE(record->count("ladder_missing") == 1);
    WARN_MESSAGE(false, "no ladder on this system: " << record->at("ladder_missing"));
    return std::nullopt;
  }
  return sent_segments(string_array(record->at("segments")));
}

TEST_CASE("wire: 03's ladder shows the client's FIN first and no reset") {
  const auto sent = ladder_of("03", "restart-after-client-close");
  if (!sent) return;
  REQUIRE(sent->size() >= 3);
  CHECK((*sent)[0].side == "client");
  CHECK((*sent)[0].flags == wire::syn);
  // The client hangs up first: its FIN opens the close, the server's answers it.
  CHECK(first_fin(*sent) == "client");
  std::size_t fins = 0;
  for (const auto& segment : *sent) fins += (segment.flags & wire::fin) != 0 ? 1 : 0;
  CHECK(fins == 2);
  CHECK_FALSE(any_with(*sent, wire::rst));
}

TEST_CASE("wire: 10's ladder shows the server's reset and no FIN") {
  for (const char* step : {"restart-after-linger-abort", "linger-abort-peer-read"}) {
    CAPTURE(step);
    const auto sent = ladder_of("10", step);
    if (!sent) return;
    REQUIRE(!sent->empty());
    // SO_LINGER {1, 0}: close() sends a RST instead of a FIN, and nobody sends a FIN after it.
    CHECK(first_fin(*sent).empty());
    std::size_t resets = 0;
    for (const auto& segment : *sent) {
      if ((segment.flags & wire::rst) == 0) continue;
      ++resets;
      CHECK(segment.side == "server");
    }
    CHECK(resets == 1);
    CHECK(sent->back().side == "server");
    CHECK((sent->back().flags & wire::rst) != 0);
  }
}

// ---- --mermaid: the same segments as sequence diagrams ----------------------------------

// One arrow of a Mermaid sequence diagram: who sent it, its flags, whether it ends in a cross.
struct Arrow {
  Sent sent;
  bool cross = false;
};

// The diagrams of a Markdown text, each under the "Step `id`" line before it (the lessons'
// diagrams under their own "Step `id`:" lines; a lesson with one diagram: under "").
std::map<std::string, std::vector<Arrow>> diagrams(const std::string& markdown) {
  static const std::regex arrow_line(R"(^\s+([CS])[0-9]+(->>|-x)[CS][0-9]+: ([A-Z ]+?) seq .*$)");
  static const std::regex step_line(R"(^Step `([a-z0-9/-]+)`.*$)");
  std::map<std::string, std::vector<Arrow>> found;
  std::istringstream lines(markdown);
  std::string line;
  std::string step;
  bool inside = false;
  while (std::getline(lines, line)) {
    std::smatch match;
    if (!inside && std::regex_match(line, match, step_line)) step = match[1];
    if (line == "```mermaid") {
      inside = true;
      found[step];
      continue;
    }
    if (inside && line == "```") {
      inside = false;
      continue;
    }
    if (!inside || !std::regex_match(line, match, arrow_line)) continue;
    Arrow arrow;
    arrow.sent.side = match[1] == "C" ? "client" : "server";
    std::istringstream words(match[3].str());
    arrow.sent.flags = flag_bits(words);
    arrow.cross = match[2] == "-x";
    found[step].push_back(arrow);
  }
  return found;
}

std::vector<Sent> sent_of(const std::vector<Arrow>& arrows) {
  std::vector<Sent> sent;
  for (const auto& arrow : arrows) sent.push_back(arrow.sent);
  return sent;
}

TEST_CASE("wire: --mermaid draws each step's segments as the ladder reports them") {
  const auto path = std::string("/tmp/portreuse-mermaid-") + std::to_string(::getpid()) + ".md";
  for (const char* number : {"02", "03", "10"}) {
    CAPTURE(number);
    const auto records = run_experiment_json(number, {"--mermaid", path});
    std::ifstream file(path);
    std::ostringstream text;
    text << file.rdbuf();
    ::unlink(path.c_str());
    std::istringstream lines(text.str());
    std::string line;
    while (std::getline(lines, line)) CHECK_MESSAGE(line.size() <= 80, line);
    const auto drawn = diagrams(text.str());
    for (const auto& record : records) {
      const auto& step = record.at("step");
      CAPTURE(step);
      REQUIRE(record.count("segments") == 1);
      if (record.at("segments") == "null") {
        WARN_MESSAGE(false, "no capture here: " << record.at("ladder_missing"));
        CHECK(text.str().find("(no capture: ") != std::string::npos);
        continue;
      }
      const auto ladder = sent_segments(string_array(record.at("segments")));
      REQUIRE(drawn.count(step) == 1);
      const auto& arrows = drawn.at(step);
      REQUIRE(arrows.size() == ladder.size());
      for (std::size_t index = 0; index < ladder.size(); ++index) {
        CAPTURE(index);
        CHECK(arrows[index].sent.side == ladder[index].side);
        CHECK(arrows[index].sent.flags == ladder[index].flags);
        // A reset is the one arrow that ends in a cross.
        CHECK(arrows[index].cross == ((ladder[index].flags & wire::rst) != 0));
      }
    }
  }
}

TEST_CASE("wire: the lessons' diagrams show the close each lesson describes") {
  const auto lesson = [](const std::string& name) {
    std::ifstream file(std::string(PORTREUSE_SOURCE_DIR) + "/lessons/" + name + ".md");
    REQUIRE(file.good());
    std::ostringstream text;
    text << file.rdbuf();
    return diagrams(text.str());
  };
  const auto closes_with_fins = [](const std::vector<Arrow>& arrows, const std::string& first) {
    const auto sent = sent_of(arrows);
    REQUIRE(sent.size() >= 3);
    CHECK(sent[0].side == "client");
    CHECK(sent[0].flags == wire::syn);
    CHECK(first_fin(sent) == first);
    CHECK_FALSE(any_with(sent, wire::rst));
  };
  // 02: the server closes first; 03: the client does.
  const auto server_first = lesson("02-time-wait-restart");
  REQUIRE(server_first.size() == 1);
  closes_with_fins(server_first.begin()->second, "server");
  const auto client_first = lesson("03-who-closes-first");
  REQUIRE(client_first.size() == 1);
  closes_with_fins(client_first.begin()->second, "client");
  // 10: each step ends with the server's reset, and nobody sends a FIN.
  const auto aborted = lesson("10-abortive-close");
  REQUIRE(aborted.size() == 2);
  for (const auto& diagram : aborted) {
    const auto& step = diagram.first;
    const auto& arrows = diagram.second;
    CAPTURE(step);
    const auto sent = sent_of(arrows);
    REQUIRE(!sent.empty());
    CHECK(first_fin(sent).empty());
    CHECK(sent.back().side == "server");
    CHECK((sent.back().flags & wire::rst) != 0);
    CHECK(arrows.back().cross);
  }
}

TEST_CASE("wire: a --mermaid path that cannot be written is bad input") {
  const auto result = run_program({program_path("03"), "--mermaid", "/nonexistent-folder/run.md"});
  REQUIRE(result.status.exited);
  CHECK(result.status.code == 2);
  CHECK(result.err.find("cannot write to '/nonexistent-folder/run.md'") != std::string::npos);
  CHECK(result.out.empty());
}

TEST_CASE("wire: a pcap written by --pcap shows tcpdump the flags the ladder printed") {
  const auto path = std::string("/tmp/portreuse-wire-") + std::to_string(::getpid()) + ".pcap";
  const auto restart = run_02_with_ladder({"--pcap", path});
  if (!restart) {
    ::unlink(path.c_str());
    return;
  }
  const auto tcpdump = find_in_path("tcpdump");
  if (!tcpdump) {
    ::unlink(path.c_str());
    WARN_MESSAGE(false, "tcpdump is not installed: the pcap file was not read back");
    return;
  }
  const auto read = run_command({*tcpdump, "-n", "-r", path}, Millis(10000));
  ::unlink(path.c_str());
  REQUIRE(read.has_value());
  INFO("tcpdump said: " << read->err << read->out);
  REQUIRE(read->status.exited);
  REQUIRE(read->status.code == 0);
  // "IP 127.0.0.1.50680 > 127.0.0.1.56183: Flags [S.], ..." per segment, in the ladder's order.
  const auto ladder = sent_segments(string_array(restart->at("segments")));
  const auto port = restart->at("port");
  std::istringstream lines(read->out);
  std::string line;
  std::size_t index = 0;
  while (std::getline(lines, line)) {
    const auto flags_at = line.find("Flags [");
    if (flags_at == std::string::npos) continue;
    REQUIRE(index < ladder.size());
    const auto letters = line.substr(flags_at + 7, line.find(']', flags_at) - flags_at - 7);
    CAPTURE(line);
    CHECK(tcpdump_flags(letters) == ladder[index].flags);
    // The sender: the server's segments leave from the step's port.
    const auto sender = line.substr(0, line.find(" > "));
    const bool from_server =
        sender.size() > port.size() && sender.compare(sender.size() - port.size(), port.size(), port) == 0;
    CHECK((from_server ? "server" : "client") == ladder[index].side);
    ++index;
  }
  CHECK(index == ladder.size());
}

TEST_CASE("wire: without namespaces the step runs as usual and says why there is no ladder") {
  // A user namespace whose limit on further namespaces is 0 stands in for a system that allows
  // none; where even that cannot be made, there is nothing to show.
  const auto unshare = find_in_path("unshare");
  const auto shell = find_in_path("sh");
  if (!unshare || !shell) {
    WARN_MESSAGE(false, "no unshare(1) here: the refusal was not tried");
    return;
  }
  const auto probe =
      run_command({*unshare, "-Ur", *shell, "-c", "echo 0 > /proc/sys/user/max_user_namespaces"}, Millis(5000));
  if (!probe || !probe->status.exited || probe->status.code != 0) {
    WARN_MESSAGE(false, "cannot make a namespace that refuses namespaces here: not tried");
    return;
  }
  const auto result =
      run_program({*unshare, "-Ur", *shell, "-c",
                   "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" --json --ladder", program_path("02")});
  INFO("stderr: " << result.err);
  REQUIRE(result.status.exited);
  CHECK(result.status.code == 0);
  const auto record = parse_flat_json(result.out.substr(0, result.out.find('\n')));
  REQUIRE(record.has_value());
  CHECK(record->at("outcome") == "EADDRINUSE");
  CHECK(record->at("segments") == "null");
  CHECK(record->at("ladder_missing").find("unshare(CLONE_NEWUSER | CLONE_NEWNET) returned") != std::string::npos);
}

TEST_CASE("wire: the narrated ladder sits before the socket table and fits 80 columns") {
  const auto result = run_program({program_path("02"), "--ladder", "--no-color"});
  REQUIRE(result.status.exited);
  REQUIRE(result.status.code == 0);
  if (result.out.find("[wire]          no ladder:") != std::string::npos) {
    WARN_MESSAGE(false, "no ladder on this system");
    return;
  }
  std::istringstream lines(result.out);
  std::string line;
  while (std::getline(lines, line)) CHECK_MESSAGE(line.size() <= 80, line);
  // The handshake is drawn, client on the left; the FIN the server sent comes before the table
  // that shows the server's TIME_WAIT.
  const auto syn = result.out.find("|-- SYN ---");
  const auto fin = result.out.find("|<------------ FIN ACK --|");
  const auto table = result.out.find("TIME-WAIT");
  CHECK(syn != std::string::npos);
  CHECK(fin != std::string::npos);
  CHECK(table != std::string::npos);
  CHECK(syn < fin);
  CHECK(fin < table);
}

TEST_CASE("wire: a pcap path that cannot be written is bad input") {
  const auto result = run_program({program_path("02"), "--pcap", "/nonexistent-folder/run.pcap"});
  REQUIRE(result.status.exited);
  CHECK(result.status.code == 2);
  CHECK(result.err.find("cannot write to '/nonexistent-folder/run.pcap': ENOENT") != std::string::npos);
  CHECK(result.out.empty());
}

// ---- A small scenario of our own, on the library: who closes, what goes on the wire ---------

struct Closing {
  std::optional<std::string> skipped;  // why the scenario could not capture
  std::vector<Sent> sent;
  std::string time_wait_side;  // "client", "server" or "none"
};

// In a child (so the test process keeps its own namespaces): enters a private namespace, opens
// the capture, and lets the client close a connection, orderly or with SO_LINGER {1, 0}.
Closing client_closes(bool abortive) {
  std::array<int, 2> ends{};
  REQUIRE(::pipe2(ends.data(), O_CLOEXEC) == 0);
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  auto child = ChildProcess::fork_running([&]() -> int {
    read_end.reset();
    const auto say = [&](const std::string& text) { (void)!::write(write_end.get(), text.data(), text.size()); };
    if (auto why = wire::enter_private_network()) {
      say("skip " + *why);
      return 0;
    }
    auto capture = wire::Capture::open_loopback();
    if (!capture) {
      say("skip the AF_PACKET socket: " + describe_outcome(capture.error()));
      return 0;
    }
    const UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener.get(), 4) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return 1;
    }
    const auto port = ntohs(address.sin_port);
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return 1;
    UniqueFd server(::accept(listener.get(), nullptr, nullptr));
    if (!server) return 1;
    if (abortive) {
      const linger abort_on_close{1, 0};
      if (::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) != 0) return 1;
      client.reset();  // RST instead of FIN
    } else {
      client.reset();  // the client's FIN first
      std::array<char, 16> buffer{};
      if (::recv(server.get(), buffer.data(), buffer.size(), 0) != 0) return 1;  // its end of stream
    }
    server.reset();
    // Let passing states settle (LAST_ACK waits for the last ACK), then read the table.
    std::vector<SocketEntry> table;
    for (int attempt = 0; attempt < 200; ++attempt) {
      auto read = read_socket_table(Transport::tcp);
      if (!read) return 1;
      table = involving_port(*read, port);
      bool settled = true;
      for (const auto& entry : table)
        settled = settled && !entry.is(TcpState::last_ack) && !entry.is(TcpState::fin_wait1);
      if (settled) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string side = "none";
    for (const auto& entry : table) {
      if (entry.is(TcpState::time_wait)) side = entry.local.port() == port ? "server" : "client";
    }
    wire::Ladder ladder;
    (void)ladder.rows(capture->drain({port}), {port});
    std::string report = "tw " + side + "\n";
    for (const auto& flags : ladder.flags()) report += flags + "\n";
    say(report);
    return 0;
  });
  REQUIRE(child.has_value());
  write_end.reset();
  std::string got;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    pollfd wait{read_end.get(), POLLIN, 0};
    if (::poll(&wait, 1, 100) <= 0) continue;
    std::array<char, 1024> chunk{};
    const auto count = ::read(read_end.get(), chunk.data(), chunk.size());
    if (count <= 0) break;
    got.append(chunk.data(), static_cast<std::size_t>(count));
  }
  const auto status = child->wait_for_exit(Millis(2000));
  REQUIRE(status.has_value());
  INFO("the scenario reported: " << got);
  REQUIRE(status->exited);
  REQUIRE(status->code == 0);
  Closing closing;
  if (got.rfind("skip ", 0) == 0) {
    closing.skipped = got.substr(5);
    return closing;
  }
  std::istringstream lines(got);
  std::string line;
  std::vector<std::string> flags;
  while (std::getline(lines, line)) {
    if (line.rfind("tw ", 0) == 0) {
      closing.time_wait_side = line.substr(3);
    } else if (!line.empty()) {
      flags.push_back(line);
    }
  }
  closing.sent = sent_segments(flags);
  return closing;
}

TEST_CASE("wire: the client that closes first sends the first FIN and keeps the TIME_WAIT") {
  const auto closing = client_closes(false);
  if (closing.skipped) {
    WARN_MESSAGE(false, "no capture here: " << *closing.skipped);
    return;
  }
  CHECK(first_fin(closing.sent) == "client");
  CHECK(closing.time_wait_side == first_fin(closing.sent));
  CHECK_FALSE(any_with(closing.sent, wire::rst));
}

TEST_CASE("wire: an abortive close (SO_LINGER on with 0 s) sends a RST and no FIN and leaves no TIME_WAIT") {
  const auto closing = client_closes(true);
  if (closing.skipped) {
    WARN_MESSAGE(false, "no capture here: " << *closing.skipped);
    return;
  }
  CHECK(first_fin(closing.sent).empty());
  REQUIRE(!closing.sent.empty());
  CHECK(closing.sent.back().side == "client");
  CHECK((closing.sent.back().flags & wire::rst) != 0);
  CHECK(closing.time_wait_side == "none");
}

TEST_CASE("wire: a frame is read as the TCP segment it carries") {
  // An Ethernet header of zeros (as on lo), IPv4 127.0.0.1 -> 127.0.0.1, TCP 40000 -> 50000, SYN.
  std::string frame(14, '\0');
  frame[12] = '\x08';
  const unsigned char ip[] = {0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1};
  const unsigned char tcp[] = {0x9c, 0x40, 0xc3, 0x50, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0};
  frame.append(reinterpret_cast<const char*>(ip), sizeof ip);
  frame.append(reinterpret_cast<const char*>(tcp), sizeof tcp);
  const auto segment = wire::parse_frame(frame);
  REQUIRE(segment.has_value());
  CHECK(segment->source == "127.0.0.1");
  CHECK(segment->source_port == 40000);
  CHECK(segment->destination_port == 50000);
  CHECK(segment->seq == 7);
  CHECK(segment->flags == wire::syn);
  CHECK(segment->payload == 0);
  CHECK(wire::flag_words(wire::syn | wire::ack) == "SYN ACK");
  CHECK(wire::flag_words(wire::fin | wire::psh | wire::ack) == "FIN PSH ACK");
  CHECK_FALSE(wire::parse_frame(frame.substr(0, 40)).has_value());  // cut inside the TCP header
  // The ladder's rows fit under the narration's text: at most 60 columns.
  wire::Ladder ladder;
  for (const auto& row : ladder.rows({*segment}, {50000})) CHECK(row.size() <= 60);
  CHECK(ladder.flags() == std::vector<std::string>{"client SYN"});
}

}  // namespace
}  // namespace portreuse::testing
