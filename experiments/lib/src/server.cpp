#include "portreuse/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <thread>

namespace portreuse {
namespace {

using Clock = std::chrono::steady_clock;

Millis left_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
  return left.count() > 0 ? left : Millis(0);
}

// Runs inside the child process: everything it learns goes to the parent as one line per event.
class ServerBody {
 public:
  ServerBody(const ServerPlan& plan, int report_fd) : plan_(plan), report_fd_(report_fd) {}

  int run() {
    const auto deadline = Clock::now() + plan_.lifetime;
    auto listener = open_socket(plan_.address.family());
    if (!listener) return report("socket", listener.error()), 1;
    if (auto error = apply_options(listener->get(), plan_.options); error || plan_.options.describe() != "no options") {
      report("setsockopt", error, plan_.options.describe());
      if (error) return 1;
    }
    const auto bound = bind_to(listener->get(), plan_.address);
    report("bind", bound, plan_.address.text());
    if (plan_.options_after_bind.describe() != "no options") {
      report("setsockopt", apply_options(listener->get(), plan_.options_after_bind),
             plan_.options_after_bind.describe() + " after bind");
    }
    if (bound) return 1;
    if (plan_.listen) {
      if (auto error = listen_on(listener->get())) return report("listen", error), 1;
      report("listen", {});
      for (int served = 0; served < plan_.clients; ++served) {
        auto connection = accept_within(listener->get(), left_until(deadline));
        if (!connection) return report("accept", connection.error()), 1;
        report("accept", {}, connection->peer.text());
        if (plan_.fork_per_connection) {
          serve_in_child(listener.value(), connection.value(), deadline);
        } else {
          serve(connection->fd, deadline);
        }
      }
    }
    idle_until(deadline);
    return 0;
  }

 private:
  void report(std::string_view kind, std::error_code outcome, std::string_view detail = {}) const {
    write_pipe_event(report_fd_, std::to_string(::getpid()), kind, outcome_name(outcome), detail);
  }

  void serve(UniqueFd& connection, Clock::time_point deadline) const {
    if (plan_.options.abortive_close) (void)apply_options(connection.get(), SocketOptions{.abortive_close = true});
    auto message = receive_within(connection.get(), left_until(deadline));
    if (!message) return report("received", message.error());
    report("received", {}, *message);
    const auto answer = reply_to(plan_.reply, *message);
    const auto sent = send_all(connection.get(), answer);
    report("replied", sent, answer);
    if (plan_.first_to_close == FirstToClose::client) {
      const auto end = wait_for_end_of_stream(connection.get(), left_until(deadline));
      report("peer-closed", end);
    }
    connection.reset();
    report("closed", {});
  }

  // The HP-UX daemon: a child serves the connection, the parent goes back to listening.
  void serve_in_child(UniqueFd& listener, Connection& connection, Clock::time_point deadline) const {
    const pid_t child = ::fork();
    if (child == 0) {
      listener.reset();
      auto message = receive_within(connection.fd.get(), left_until(deadline));
      if (message) {
        report("received", {}, *message);
        report("replied", send_all(connection.fd.get(), reply_to(plan_.reply, *message)),
               reply_to(plan_.reply, *message));
        // It keeps the connection until the client ends it, as a daemon's worker would.
        report("peer-closed", wait_for_end_of_stream(connection.fd.get(), left_until(deadline)));
      }
      connection.fd.reset();
      report("closed", {});
      ::_exit(0);
    }
    report("forked", child < 0 ? last_error() : std::error_code{}, std::to_string(child));
    connection.fd.reset();
  }

  static void idle_until(Clock::time_point deadline) {
    while (Clock::now() < deadline) std::this_thread::sleep_for(std::min(left_until(deadline), Millis(50)));
  }

  const ServerPlan& plan_;
  int report_fd_;
};

}  // namespace

std::string reply_to(Reply reply, std::string_view message) {
  if (reply == Reply::receipt) return kReceiptText;
  std::string upper(message);
  for (auto& character : upper) character = static_cast<char>(std::toupper(static_cast<unsigned char>(character)));
  return upper;
}

Result<ServerProcess> ServerProcess::start(const ServerPlan& plan) {
  std::array<int, 2> ends{};
  if (::pipe2(ends.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  auto child = ChildProcess::fork_running([&]() {
    read_end.reset();
    return ServerBody(plan, write_end.get()).run();
  });
  if (!child) return child.error();
  write_end.reset();
  return ServerProcess(std::move(child.value()), std::move(read_end));
}

std::optional<ServerEvent> ServerProcess::next_event(Millis deadline) {
  auto event = events_.next(deadline);
  if (!event) return std::nullopt;
  ServerEvent reported;
  reported.pid = static_cast<pid_t>(std::stol(event->source));
  reported.kind = std::move(event->kind);
  reported.outcome = std::move(event->outcome);
  reported.detail = std::move(event->detail);
  return reported;
}

std::optional<ServerEvent> ServerProcess::await(std::string_view kind, Millis deadline) {
  const auto until = Clock::now() + deadline;
  while (auto event = next_event(left_until(until))) {
    if (event->kind == kind) return event;
  }
  return std::nullopt;
}

}  // namespace portreuse
