// tcp_server: the articles' server, for a person to start, connect to, stop with Ctrl+C and start
// again (lessons/walkthrough.md). It answers each message in upper case (the echo server of the
// post "端口复用 (bind error: Address already in use 问题)") or, with --receipt, with a fixed
// acknowledgement (the server of "Socket programming small problem: Address already in use").
// When a call fails it says which call, the errno, what the socket table shows for the port and
// the likely reason, and exits 1. Ctrl+C (SIGINT), SIGTERM and SIGHUP close it cleanly.
//
// Usage: tcp_server --port P [--addr A] [--reuseaddr] [--reuseport] [--close-first] [--fork]
//                   [--linger0] [--receipt] [--once] [--no-color]
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>
#include <variant>

#include "portreuse/child.hpp"
#include "portreuse/cli.hpp"
#include "portreuse/diagnosis.hpp"
#include "portreuse/narrator.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/socket_table.hpp"

namespace {

// How the server answers: like the Chinese post's echo server (upper case), or like the Ctrl+C
// article's server (a fixed receipt).
enum class Reply { uppercase, receipt };
constexpr const char* kReceiptText = "message received";

std::string reply_to(Reply reply, std::string_view message) {
  if (reply == Reply::receipt) return kReceiptText;
  std::string upper(message);
  for (auto& character : upper) character = static_cast<char>(std::toupper(static_cast<unsigned char>(character)));
  return upper;
}

using namespace portreuse;

// How often the loops look at the stop flag: short enough that Ctrl+C feels immediate.
constexpr Millis kTick{200};
// A connection nobody talks on is closed after this, so that no forked child outlives its use.
constexpr Millis kIdleLimit{300000};

volatile std::sig_atomic_t stop_signal = 0;

extern "C" void remember_stop(int signal_number) {
  stop_signal = signal_number;
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = remember_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR and the loop sees the flag at once
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal_number, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

struct Settings {
  Endpoint address;
  SocketOptions options;
  bool close_first = false;
  bool fork_per_connection = false;
  bool linger0 = false;
  bool once = false;  // serve one connection, then exit (the post's server does that)
  Reply reply = Reply::uppercase;
  bool no_colour = false;
};

std::string printable(std::string_view text) {
  std::string shown;
  for (const char character : text) {
    if (character == '\n' || character == '\r') continue;
    const auto byte = static_cast<unsigned char>(character);
    shown += (byte < 0x20 || byte == 0x7f) ? '?' : character;
  }
  return "\"" + shown + "\"";
}

std::string actor_for(pid_t pid, bool child) {
  return (child ? "child " : "server ") + std::to_string(pid);
}

enum class ServeEnd { client_closed, server_closes_first, stopped, failed };

// Answers messages on one connection until the client closes it, or (--close-first) until the first
// answer was sent, or until Ctrl+C.
ServeEnd serve(int connection, const Settings& settings, const Narrator& out, const std::string& actor,
               bool stop_on_signal) {
  auto idle_until = std::chrono::steady_clock::now() + kIdleLimit;
  for (;;) {
    if (stop_on_signal && stop_signal != 0) return ServeEnd::stopped;
    if (std::chrono::steady_clock::now() >= idle_until) {
      out.line(actor, "no message for " + std::to_string(kIdleLimit.count() / 1000) + " s: giving up on the client");
      return ServeEnd::server_closes_first;
    }
    const auto ready = wait_readable(connection, kTick);
    if (ready.value() == ETIMEDOUT || ready.value() == EINTR) continue;
    if (ready) {
      out.call(actor, "poll", ready);
      return ServeEnd::failed;
    }
    auto received = receive_within(connection, kTick);
    if (!received) {
      if (received.error().value() == ETIMEDOUT || received.error().value() == EINTR) continue;
      out.call(actor, "recv", received.error());
      return ServeEnd::failed;
    }
    if (received->empty()) {
      out.line(actor, "the client closed the connection (it closed first)");
      return ServeEnd::client_closed;
    }
    idle_until = std::chrono::steady_clock::now() + kIdleLimit;
    out.line(actor, "received " + printable(*received));
    std::string answer = reply_to(settings.reply, *received);
    if (settings.reply == Reply::receipt && received->back() == '\n') answer += '\n';
    if (auto error = send_all(connection, answer)) {
      out.call(actor, "send", error);
      return ServeEnd::failed;
    }
    out.line(actor, "answered " + printable(answer));
    if (settings.close_first) return ServeEnd::server_closes_first;
  }
}

std::string clock_in(double seconds) {
  const std::time_t at = std::time(nullptr) + static_cast<std::time_t>(std::lround(seconds));
  std::tm local{};
  ::localtime_r(&at, &local);
  std::array<char, 16> text{};
  std::strftime(text.data(), text.size(), "%H:%M:%S", &local);
  return text.data();
}

// After this side closed first: how long the kernel keeps the connection, read from the socket
// table (never assumed), so that a class knows until when the restart of the walkthrough's step 4
// still fails. The client closes a moment later; until then the connection is in FIN-WAIT-2.
void report_time_wait(std::uint16_t local_port, const Endpoint& peer, bool reuse_address, const Narrator& out,
                      const std::string& actor) {
  const auto until = std::chrono::steady_clock::now() + Millis(1000);
  for (;;) {
    auto table = read_socket_table(Transport::tcp);
    if (!table) return;  // nothing observed: nothing to say
    std::optional<SocketEntry> found;
    for (const auto& entry : *table) {
      if (entry.local.port() == local_port && entry.remote.port() == peer.port() &&
          entry.local.family() == peer.family()) {
        found = entry;
      }
    }
    if (found && found->is(TcpState::time_wait)) {
      std::array<char, 16> seconds{};
      std::snprintf(seconds.data(), seconds.size(), "%.0f", found->timer_seconds);
      // On Linux the TIME_WAIT keeps this socket's SO_REUSEADDR: that decides which restart passes.
      out.line(actor, "the kernel keeps it in TIME_WAIT for " + std::string(seconds.data()) + " s more (until " +
                          clock_in(found->timer_seconds) + "): until then a restart on this port fails" +
                          (reuse_address ? " unless it sets SO_REUSEADDR too" : ", with or without SO_REUSEADDR"));
      return;
    }
    if (std::chrono::steady_clock::now() >= until) {
      if (found) out.line(actor, "the connection is in " + found->state_name() + " until the client closes its side");
      return;
    }
    std::this_thread::sleep_for(Millis(20));
  }
}

void close_connection(UniqueFd& connection, ServeEnd end, const Settings& settings, const Narrator& out,
                      const std::string& actor, const Endpoint& peer) {
  const auto local = local_endpoint(connection.get());
  connection.reset();
  std::string text = "closed the connection";
  if (end == ServeEnd::server_closes_first) text += " first (--close-first)";
  if (end == ServeEnd::stopped) text += " first (stopping)";
  if (settings.linger0) text += " with SO_LINGER 0 (an abortive close: RST instead of FIN)";
  out.line(actor, text);
  const bool closed_first = end == ServeEnd::server_closes_first || end == ServeEnd::stopped;
  if (closed_first && !settings.linger0 && local)
    report_time_wait(local->port(), peer, settings.options.reuse_address.value_or(0) == 1, out, actor);
}

// The HP-UX daemon's way: a child serves the connection while the parent goes on listening. The
// child leaves the terminal's process group, so Ctrl+C stops only the listener and the child keeps
// its connection until the client leaves, as a daemon's worker would.
pid_t serve_in_child(UniqueFd& listener, Connection& connection, const Settings& settings, const Narrator& out) {
  const pid_t child = ::fork();
  if (child < 0) {
    out.call(actor_for(::getpid(), false), "fork", last_error());
    return child;
  }
  if (child == 0) {
    ::setpgid(0, 0);
    listener.reset();
    const auto actor = actor_for(::getpid(), true);
    const auto end = serve(connection.fd.get(), settings, out, actor, false);
    close_connection(connection.fd, end, settings, out, actor, connection.peer);
    std::cout.flush();
    ::_exit(0);
  }
  out.line(actor_for(::getpid(), false),
           "forked child " + std::to_string(child) + " to serve " + connection.peer.text() + "; goes on listening");
  connection.fd.reset();
  return child;
}

void reap_children(const Narrator& out, std::vector<pid_t>& children) {
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) return;
    std::erase(children, done);
    out.line(actor_for(done, true), ExitStatus::from_wait_status(status).describe());
  }
}

int report_failure(const std::string& call, const Settings& settings, std::error_code error) {
  const Narrator err(std::cerr, true, colour_wanted(settings.no_colour, STDERR_FILENO));
  std::cerr << "tcp_server: " << call << ": " << err.paint(describe_outcome(error), Tone::bad) << "\n";
  if (call.rfind("bind", 0) != 0 && call.rfind("listen", 0) != 0) return kExitCouldNotRun;
  const auto diagnosis = diagnose_bind_failure(settings.address, settings.options, error);
  if (error.value() == EADDRINUSE || !diagnosis.sockets.empty()) {
    err.table("kernel",
              "the sockets bound to port " + std::to_string(settings.address.port()) + " now:", diagnosis.sockets);
  }
  err.paragraph("Likely reason:", diagnosis.reason, Tone::note);
  return kExitCouldNotRun;
}

int run(const Settings& settings) {
  const Narrator out(std::cout, true, colour_wanted(settings.no_colour, STDOUT_FILENO));
  const auto actor = actor_for(::getpid(), false);
  auto listener = open_socket(settings.address.family());
  if (!listener) return report_failure("socket", settings, listener.error());
  if (settings.options.describe() != "no options") {
    if (auto error = apply_options(listener->get(), settings.options)) {
      return report_failure("setsockopt " + settings.options.describe(), settings, error);
    }
    out.call(actor, "setsockopt " + settings.options.describe(), {});
  }
  if (auto error = bind_to(listener->get(), settings.address)) {
    return report_failure("bind " + settings.address.text(), settings, error);
  }
  out.call(actor, "bind " + settings.address.text(), {});
  if (auto error = listen_on(listener->get())) return report_failure("listen", settings, error);
  out.call(actor, "listen", {});
  out.line(actor, std::string("listening on ") + settings.address.text() + ", answering " +
                      (settings.reply == Reply::uppercase ? "in upper case" : "\"" + std::string(kReceiptText) + "\"") +
                      (settings.close_first ? "; closes each connection after the first answer" : "") +
                      (settings.fork_per_connection ? "; a child per connection" : "") +
                      (settings.once ? ". Exits after one connection." : ". Ctrl+C stops it."));

  std::vector<pid_t> children;
  while (stop_signal == 0) {
    reap_children(out, children);
    const auto ready = wait_readable(listener->get(), kTick);
    if (ready.value() == ETIMEDOUT || ready.value() == EINTR) continue;
    auto connection = accept_within(listener->get(), kTick);
    if (!connection) {
      if (connection.error().value() == ETIMEDOUT || connection.error().value() == EINTR) continue;
      out.call(actor, "accept", connection.error());
      continue;
    }
    out.line(actor, "connection from " + connection->peer.text());
    if (settings.linger0) (void)apply_options(connection->fd.get(), SocketOptions{.abortive_close = true});
    if (settings.fork_per_connection) {
      if (const pid_t child = serve_in_child(listener.value(), connection.value(), settings, out); child > 0) {
        children.push_back(child);
      }
      if (settings.once) break;
      continue;
    }
    const auto end = serve(connection->fd.get(), settings, out, actor, true);
    close_connection(connection->fd, end, settings, out, actor, connection->peer);
    if (settings.once) break;
  }
  listener->reset();
  if (stop_signal == 0) {
    out.line(actor, "served one connection (--once): closed the listening socket; exiting");
    return 0;
  }
  std::cout << "\n";
  out.line(actor, signal_name(stop_signal) + ": closed the listening socket; exiting");
  reap_children(out, children);
  for (const pid_t child : children) {
    out.line(actor_for(child, true), "still serves its connection; it ends when its client leaves");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cli(
      "tcp_server",
      "--port P [--addr A] [--reuseaddr] [--reuseport] [--close-first] [--fork] [--linger0] [--receipt] [--once]",
      "The articles' server, for the classroom walkthrough (lessons/walkthrough.md). It answers each message "
      "in upper case (or with a fixed receipt), says who connected, and runs until Ctrl+C. When it closes "
      "a connection first it says how long the kernel keeps it in TIME_WAIT. When bind() or listen() fails "
      "it shows the socket table for the port and the likely reason, and exits 1.",
      {{"--port", "P", "the port to listen on (1-65535)"},
       {"--addr", "A", "the address to bind: 0.0.0.0 (default), 127.0.0.1, ::, ::1, ..."},
       {"--reuseaddr", "", "set SO_REUSEADDR=1 before bind()"},
       {"--reuseport", "", "set SO_REUSEPORT=1 before bind()"},
       {"--close-first", "", "close each connection right after the first answer (the server closes first)"},
       {"--fork", "", "serve each connection in a child process (Ctrl+C stops only the listener)"},
       {"--linger0", "", "close connections with SO_LINGER 0 (RST, no TIME_WAIT)"},
       {"--receipt", "", "answer \"message received\" instead of the message in upper case"},
       {"--once", "", "serve one connection, then exit (as the post's server does)"},
       {"--no-color", "", "no colours (also when NO_COLOR is set or output is not a terminal)"}});
  const auto parsed = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed);
  const auto usage_error = [&](const std::string& message) { return cli.usage_error(message); };
  const auto port = cli.required_port(args, "--port");
  if (!port) return kExitUsage;
  const auto address_text = args.value("--addr").value_or("0.0.0.0");
  const auto address = Endpoint::parse(address_text, *port);
  if (!address) return usage_error("bad address '" + address_text + "' (want an IP address: 127.0.0.1, ::)");

  Settings settings;
  settings.address = *address;
  if (args.has("--reuseaddr")) settings.options.reuse_address = 1;
  if (args.has("--reuseport")) settings.options.reuse_port = 1;
  settings.close_first = args.has("--close-first");
  settings.fork_per_connection = args.has("--fork");
  settings.linger0 = args.has("--linger0");
  settings.once = args.has("--once");
  if (args.has("--receipt")) settings.reply = Reply::receipt;
  settings.no_colour = args.has("--no-color");
  install_stop_handlers();
  return run(settings);
}
