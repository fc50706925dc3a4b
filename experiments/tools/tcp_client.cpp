// tcp_client: the articles' client, for the classroom walkthrough (lessons/walkthrough.md). It
// connects to a server on loopback, sends a message (the arguments, or each line typed on
// standard input), prints each answer, and says which side closed the connection first, which
// decides where TIME_WAIT stays. Refused, reset and unusable addresses get a plain explanation.
//
// Usage: tcp_client --port P [--addr A] [--bind ADDR:PORT] [--reuseaddr] [--close-first] [MESSAGE...]
#include <poll.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <iostream>
#include <variant>

#include "portreuse/cli.hpp"
#include "portreuse/diagnosis.hpp"
#include "portreuse/narrator.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"

namespace {

using namespace portreuse;
using Clock = std::chrono::steady_clock;

// A person typing gets this long between lines before the client gives up.
constexpr Millis kTypingLimit{600000};

struct Settings {
  Endpoint server;
  std::optional<Endpoint> local;
  SocketOptions options;
  bool close_first = false;
  std::optional<std::string> message;  // nullopt: read lines from standard input
  bool no_colour = false;
};

// What was sent or received, on one line and safe for the terminal: the line's own ending is
// dropped, and every other control character a server sends (an escape sequence could clear or
// retitle the student's terminal) is shown escaped, as tcp_server does with what it receives.
std::string shown(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  return "\"" + escape_controls(text) + "\"";
}

class Client {
 public:
  explicit Client(const Settings& settings)
      : settings_(settings),
        out_(std::cout, true, colour_wanted(settings.no_colour, STDOUT_FILENO)),
        err_(std::cerr, true, colour_wanted(settings.no_colour, STDERR_FILENO)) {}

  int run() {
    auto opened = open_socket(settings_.server.family());
    if (!opened) return fail("socket", opened.error());
    socket_ = std::move(opened.value());
    if (settings_.options.describe() != "no options") {
      if (auto error = apply_options(socket_.get(), settings_.options)) {
        return fail("setsockopt " + settings_.options.describe(), error);
      }
      out_.call("client", "setsockopt " + settings_.options.describe(), {});
    }
    if (settings_.local) {
      if (auto error = bind_to(socket_.get(), *settings_.local)) return fail_bind(error);
      out_.call("client", "bind " + settings_.local->text(), {});
    }
    if (auto error = connect_within(socket_.get(), settings_.server)) {
      return fail("connect " + settings_.server.text(), error);
    }
    const auto local = local_endpoint(socket_.get());
    out_.call("client", "connect " + settings_.server.text() + (local ? " from " + local->text() : ""), {});

    if (settings_.message) {
      if (const int status = exchange(*settings_.message); status != 0) return status;
    } else if (const int status = exchange_typed_lines(); status != 0) {
      return status;
    }
    return finish();
  }

 private:
  int fail(const std::string& call, std::error_code error) {
    std::cerr << "tcp_client: " << call << ": " << err_.paint(describe_outcome(error), Tone::bad) << "\n";
    const auto verb = call.substr(0, call.find(' '));
    err_.paragraph("Why:", explain_client_failure(verb, settings_.server, error), Tone::note);
    return kExitCouldNotRun;
  }

  int fail_bind(std::error_code error) {
    std::cerr << "tcp_client: bind " << settings_.local->text() << ": "
              << err_.paint(describe_outcome(error), Tone::bad) << "\n";
    const auto diagnosis = diagnose_bind_failure(*settings_.local, settings_.options, error);
    if (error.value() == EADDRINUSE) {
      err_.table("kernel",
                 "the sockets bound to port " + std::to_string(settings_.local->port()) + " now:", diagnosis.sockets);
    }
    err_.paragraph("Likely reason:", diagnosis.reason, Tone::note);
    return kExitCouldNotRun;
  }

  // Sends one message and prints the answer: a line, or what arrived before the deadline.
  int exchange(const std::string& message) {
    const std::string line = message + "\n";
    if (auto error = send_all(socket_.get(), line)) return fail("send", error);
    out_.line("client", "sent " + shown(line));
    std::string answer;
    const auto until = Clock::now() + kDefaultDeadline;
    while (answer.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<Millis>(until - Clock::now());
      if (left.count() <= 0) break;
      auto got = receive_within(socket_.get(), left);
      if (!got) {
        if (got.error().value() == ETIMEDOUT) break;
        return fail("recv", got.error());
      }
      if (got->empty()) {
        server_closed_ = true;
        break;
      }
      answer += *got;
    }
    if (!answer.empty()) {
      out_.line("client", "answer: " + shown(answer));
    } else if (server_closed_) {
      out_.line("client", "the server closed the connection without answering");
    } else {
      // A server that accepts and never answers must not hold the client (or a class) forever.
      out_.line("client", "no answer within " + std::to_string(kDefaultDeadline.count() / 1000) + " s");
      return fail("recv", make_error(ETIMEDOUT));
    }
    return 0;
  }

  // The articles' interactive client: each line typed is sent and answered, until end of input
  // (Ctrl+D) or until the server closes the connection.
  int exchange_typed_lines() {
    if (::isatty(STDIN_FILENO) == 1) out_.line("client", "type a line and press Enter; Ctrl+D ends");
    std::string pending;
    auto idle_until = Clock::now() + kTypingLimit;
    while (!server_closed_) {
      if (const auto newline = pending.find('\n'); newline != std::string::npos) {
        const std::string line = pending.substr(0, newline);
        pending.erase(0, newline + 1);
        if (const int status = exchange(line); status != 0) return status;
        idle_until = Clock::now() + kTypingLimit;
        continue;
      }
      const auto left = std::chrono::duration_cast<Millis>(idle_until - Clock::now());
      if (left.count() <= 0) {
        out_.line("client", "nothing typed for " + std::to_string(kTypingLimit.count() / 1000) + " s");
        return 0;
      }
      std::array<pollfd, 2> watched{pollfd{STDIN_FILENO, POLLIN, 0}, pollfd{socket_.get(), POLLIN, 0}};
      const int ready =
          ::poll(watched.data(), watched.size(), static_cast<int>(std::min<long long>(left.count(), 1000)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) continue;
      if (watched[1].revents != 0) {
        auto got = receive_within(socket_.get(), Millis(0));
        if (got && got->empty()) {
          server_closed_ = true;
          break;
        }
        if (!got) return fail("recv", got.error());
        out_.line("client", "unasked: " + shown(*got));
      }
      if (watched[0].revents != 0) {
        std::array<char, 1024> buffer{};
        const auto count = ::read(STDIN_FILENO, buffer.data(), buffer.size());
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) {
          if (!pending.empty()) return exchange(pending);
          return 0;
        }
        pending.append(buffer.data(), static_cast<std::size_t>(count));
      }
    }
    return 0;
  }

  // Who closes first decides who keeps TIME_WAIT: say which side it was.
  int finish() {
    if (!server_closed_ && !settings_.close_first) {
      out_.line("client", "waiting up to " + std::to_string(kDefaultDeadline.count() / 1000) +
                              " s for the server to close first");
      const auto end = wait_for_end_of_stream(socket_.get(), kDefaultDeadline);
      if (!end) server_closed_ = true;
      if (end && end.value() != ETIMEDOUT) return fail("recv", end);
    }
    if (server_closed_) {
      out_.line("client", "the server closed the connection first; closing ours");
    } else {
      out_.line("client", std::string("closing the connection first") +
                              (settings_.close_first ? " (--close-first)" : " (the server did not)"));
    }
    socket_.reset();
    out_.line("client", "closed");
    return 0;
  }

  const Settings& settings_;
  Narrator out_;
  Narrator err_;
  UniqueFd socket_;
  bool server_closed_ = false;
};

std::optional<Endpoint> parse_local(const std::string& text) {
  auto endpoint = Endpoint::parse_with_port(text);
  if (!endpoint && text.rfind("localhost:", 0) == 0) endpoint = Endpoint::parse_with_port("127.0.0.1" + text.substr(9));
  return endpoint;
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cli(
      "tcp_client", "--port P [--addr A] [--bind ADDR:PORT] [--reuseaddr] [--close-first] [MESSAGE...]",
      "The articles' client, for the classroom walkthrough (lessons/walkthrough.md). It connects to a server "
      "on loopback, sends MESSAGE (or each line typed on standard input, until Ctrl+D), prints the answers, "
      "and then lets the server close first (waiting up to 3 s, and saying so) unless --close-first is given.",
      {{"--port", "P", "the server's port (1-65535)"},
       {"--addr", "A", "the server's address: 127.0.0.1 (default), ::1, localhost, any 127.x.y.z"},
       {"--bind", "ADDR:PORT", "bind this local address and port before connecting (e.g. 127.0.0.1:40000)"},
       {"--reuseaddr", "", "set SO_REUSEADDR=1 before bind()/connect()"},
       {"--close-first", "", "close the connection right after the last answer (the client closes first)"},
       {"--no-color", "", "no colours (also when NO_COLOR is set or output is not a terminal)"}},
      64);
  const auto parsed = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed);
  const auto usage_error = [&](const std::string& message) { return cli.usage_error(message); };
  const auto port = cli.required_port(args, "--port");
  if (!port) return kExitUsage;
  auto address_text = args.value("--addr").value_or("127.0.0.1");
  if (address_text == "localhost") address_text = "127.0.0.1";
  const auto server = Endpoint::parse(address_text, *port);
  if (!server) return usage_error("bad address '" + address_text + "' (want an IP address)");
  // The walkthrough, like the whole suite, stays on this machine.
  if (!server->is_loopback()) {
    return usage_error("address " + address_text + " is not loopback");
  }

  Settings settings;
  settings.server = *server;
  if (auto local_text = args.value("--bind")) {
    settings.local = parse_local(*local_text);
    if (!settings.local) return usage_error("bad --bind '" + *local_text + "' (want ADDR:PORT)");
    if (settings.local->family() != server->family()) {
      return usage_error("--bind " + *local_text + ", --addr " + address_text + ": different address families");
    }
  }
  if (args.has("--reuseaddr")) settings.options.reuse_address = 1;
  settings.close_first = args.has("--close-first");
  if (!args.positional.empty()) {
    std::string message;
    for (const auto& word : args.positional) message += (message.empty() ? "" : " ") + word;
    settings.message = message;
  }
  settings.no_colour = args.has("--no-color");
  ::signal(SIGPIPE, SIG_IGN);
  return Client(settings).run();
}
