// socket_states: the TCP sockets with a given port at either end, as `ss -tano` would list them
// (state, local and peer address, timer, owning process), read from /proc/net/tcp{,6} and /proc/*/fd
// directly, so that the classroom needs no other tool. --watch refreshes once a second and shows
// the TIME-WAIT countdown; --json prints one JSON object per snapshot.
//
// Usage: socket_states PORT [--watch] [--count N] [--json] [--no-color]
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <thread>
#include <variant>

#include "portreuse/cli.hpp"
#include "portreuse/json.hpp"
#include "portreuse/narrator.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/socket_table.hpp"

namespace {

using namespace portreuse;

// --watch without --count ends by itself after this many snapshots (ten minutes).
constexpr int kMaxSnapshots = 600;

volatile std::sig_atomic_t stop_signal = 0;

extern "C" void remember_stop(int signal_number) {
  stop_signal = signal_number;
}

std::string padded(std::string text, std::size_t width) {
  if (text.size() < width) text.resize(width, ' ');
  return text + " ";
}

std::string timer_name(TimerKind timer) {
  switch (timer) {
    case TimerKind::none: return "";
    case TimerKind::retransmit: return "on";
    case TimerKind::keepalive: return "keepalive";
    case TimerKind::time_wait: return "timewait";
    case TimerKind::probe: return "persist";
  }
  return "";
}

std::string one_decimal(double value) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f", value);
  return text.data();
}

std::string clock_text() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  std::array<char, 16> text{};
  std::strftime(text.data(), text.size(), "%H:%M:%S", &local);
  return text.data();
}

// A socket without a peer, as ss writes it: "0.0.0.0:*" or "[::]:*".
std::string any_peer(const Endpoint& remote) {
  const auto text = remote.text();
  return text.substr(0, text.rfind(':')) + ":*";
}

struct Row {
  SocketEntry socket;
  std::optional<SocketOwner> owner;
};

std::vector<Row> snapshot(std::uint16_t port, std::error_code& error) {
  std::vector<Row> rows;
  // From /proc itself, as the header line and the walkthrough say: one refresh a second can afford
  // the milliseconds that the experiments save by asking netlink instead.
  auto table = read_socket_table(Transport::tcp, TableSource::proc);
  if (!table) {
    error = table.error();
    return rows;
  }
  for (const auto& entry : involving_port(*table, port)) rows.push_back({entry, find_socket_owner(entry.inode)});
  return rows;
}

std::string owner_json(const std::optional<SocketOwner>& owner) {
  return owner ? std::to_string(owner->pid) : "null";
}

void print_json(std::uint16_t port, int number, const std::vector<Row>& rows) {
  std::vector<std::string> sockets;
  sockets.reserve(rows.size());
  for (const auto& row : rows) {
    JsonObject item;
    item.add("state", row.socket.state_name())
        .add("local", row.socket.local.text())
        .add("peer", row.socket.remote.text())
        .add("timer", timer_name(row.socket.timer))
        .add("timer_seconds", row.socket.timer_seconds)
        .add_raw("pid", owner_json(row.owner))
        .add_raw("process", row.owner ? json_quote(row.owner->command) : "null")
        .add("uid", row.socket.uid)
        .add("inode", static_cast<long long>(row.socket.inode));
    sockets.push_back(item.text());
  }
  const auto array = json_array(sockets);
  JsonObject snapshot_object;
  snapshot_object.add("port", static_cast<int>(port))
      .add("snapshot", number)
      .add("time", clock_text())
      .add("count", static_cast<int>(rows.size()))
      .add_raw("sockets", array);
  std::cout << snapshot_object.text() << std::endl;
}

// The directory this tool runs from: the suite's programs (tcp_server, tcp_client, the
// experiments) live there, so a socket whose owner runs from elsewhere is another program's.
std::string own_directory() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string() : self.parent_path().string();
}

bool from_elsewhere(const SocketOwner& owner, const std::string& directory) {
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(owner.pid) + "/exe", error);
  // Unreadable (another user's process): say nothing rather than guess.
  if (error || directory.empty()) return false;
  return exe.parent_path().string() != directory;
}

// Columns sized for 80: the process goes on a line of its own when the row would be wider.
constexpr std::size_t kStateWidth = 10;
constexpr std::size_t kAddressWidth = 21;  // "255.255.255.255:65535"
constexpr std::size_t kTimerWidth = 7;
constexpr std::size_t kColumns = 80;

void print_table(std::uint16_t port, const std::vector<Row>& rows, const Narrator& paint, bool watching) {
  std::cout << paint.paint("TCP sockets using port " + std::to_string(port) + " at either end, " + clock_text() +
                               " (from /proc/net/tcp, tcp6)",
                           Tone::heading)
            << "\n";
  std::cout << padded("State", kStateWidth) << padded("Local Address:Port", kAddressWidth)
            << padded("Peer Address:Port", kAddressWidth) << padded("Timer", kTimerWidth) << "Process\n";
  const auto directory = own_directory();
  double longest_time_wait = 0;
  bool foreign_seen = false;
  for (const auto& row : rows) {
    const auto& entry = row.socket;
    const bool has_peer = entry.remote.port() != 0;
    std::string process = row.owner ? std::to_string(row.owner->pid) + " " + row.owner->command : "-";
    if (row.owner && from_elsewhere(*row.owner, directory)) {
      process += " *";
      foreign_seen = true;
    }
    if (!row.owner && entry.is(TcpState::time_wait)) process = "kernel";
    const Tone tone = entry.is(TcpState::time_wait) ? Tone::note
                      : entry.is(TcpState::listen)  ? Tone::good
                                                    : Tone::plain;
    const std::string timer = entry.timer == TimerKind::none ? "" : one_decimal(entry.timer_seconds) + " s";
    const std::string head = padded(entry.local.text(), kAddressWidth) +
                             padded(has_peer ? entry.remote.text() : any_peer(entry.remote), kAddressWidth) +
                             padded(timer, kTimerWidth);
    std::cout << paint.paint(padded(entry.state_name(), kStateWidth), tone);
    const std::size_t used = kStateWidth + 1 + head.size();
    if (used + process.size() > kColumns) {
      // No room left on the row: the process goes under it, flush right.
      std::cout << head.substr(0, head.find_last_not_of(' ') + 1) << "\n"
                << std::string(kColumns > process.size() ? kColumns - process.size() : 0, ' ');
    } else {
      std::cout << head;
    }
    std::cout << process << "\n";
    if (entry.is(TcpState::time_wait) && entry.local.port() == port) {
      longest_time_wait = std::max(longest_time_wait, entry.timer_seconds);
    }
  }
  if (rows.empty()) std::cout << "(no sockets: nothing uses port " << port << ")\n";
  if (longest_time_wait > 0) {
    std::cout << paint.paint("TIME_WAIT keeps port " + std::to_string(port) + " bound for another " +
                                 one_decimal(longest_time_wait) + " s",
                             Tone::note)
              << "\n";
  }
  if (foreign_seen) {
    std::cout << "* another program's socket, not one of this suite's tools\n";
  }
  if (watching) std::cout << paint.paint("refreshing every second; Ctrl+C stops", Tone::dim) << "\n";
  std::cout << std::flush;
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cli("socket_states", "PORT [--watch] [--count N] [--json] [--no-color]",
                        "Lists the TCP sockets with PORT at either end, like `ss -tano`: state, local and peer "
                        "address, timer (the TIME_WAIT countdown, in seconds), and the owning process (pid and "
                        "name) where /proc tells; \"kernel\" for a TIME_WAIT, which no process owns, and a * "
                        "for a process that is not one of this suite's tools. The state names are the kernel's, "
                        "as ss prints them (TIME-WAIT for what the lessons call TIME_WAIT).\n"
                        "Reads /proc/net/tcp, /proc/net/tcp6 and /proc/*/fd; needs no other tool.",
                        {{"--watch", "", "refresh once a second (until Ctrl+C, at most 10 minutes)"},
                         {"--count", "N", "with --watch: stop after N snapshots"},
                         {"--json", "", "one JSON object per snapshot, nothing else"},
                         {"--no-color", "", "no colours (also when NO_COLOR is set or output is not a terminal)"}},
                        1);
  const auto parsed = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed);
  const auto usage_error = [&](const std::string& message) { return cli.usage_error(message); };
  if (args.positional.empty()) return usage_error("missing PORT");
  const auto port = parse_port(args.positional[0]);
  if (!port) return usage_error(bad_port_message(args.positional[0]));
  const bool watch = args.has("--watch");
  int snapshots = watch ? kMaxSnapshots : 1;
  if (auto count_text = args.value("--count")) {
    if (!watch) return usage_error("--count needs --watch");
    const auto count = parse_port(*count_text);  // 1..65535 is a fine range for a count too
    if (!count || *count > kMaxSnapshots) {
      return usage_error("bad count '" + *count_text + "' (want 1 to " + std::to_string(kMaxSnapshots) + ")");
    }
    snapshots = *count;
  }
  const bool json = args.has("--json");
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  const Narrator paint(std::cout, true, colour_wanted(args.has("--no-color"), STDOUT_FILENO));

  struct sigaction action {};
  action.sa_handler = remember_stop;
  sigemptyset(&action.sa_mask);
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal_number, &action, nullptr);

  for (int number = 1; number <= snapshots && stop_signal == 0; ++number) {
    std::error_code error;
    const auto rows = snapshot(*port, error);
    if (error) {
      std::cerr << "socket_states: cannot read the socket table: " << describe_outcome(error)
                << " (this tool needs Linux's /proc/net/tcp)\n";
      return kExitCouldNotRun;
    }
    if (json) {
      print_json(*port, number, rows);
    } else {
      // A terminal gets a screen that updates in place; a pipe or file gets one table after another.
      if (watch && terminal) std::cout << "\033[H\033[2J";
      if (watch && !terminal && number > 1) std::cout << "\n";
      print_table(*port, rows, paint, watch && terminal);
    }
    if (number < snapshots) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (stop_signal == 0 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  // Ctrl+C ends --watch: the shell's prompt then starts on a line of its own, not after "^C".
  if (stop_signal != 0) std::cout << "\n" << std::flush;
  return 0;
}
