// 14-time-wait-length: How long TIME_WAIT really lasts.
//
// Shows: right after a server that closed first is restarted, bind() fails and the kernel's
// TIME_WAIT timer for the port reads just under 60 seconds. With --long it waits the TIME_WAIT out,
// trying bind() every 100 ms, and reports how long the port really stayed blocked.
//
// Articles: "Port reuse C++ (address reuse)" (IBM developerWorks: "about 2 to 4 minutes") and
// "Socket programming small problem: Address already in use" (waiting a while makes it work).
// Lesson: lessons/14-time-wait-length.md
//
// Usage: 14-time-wait-length [--port P] [--json] [--no-color] [--step] [--long]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Millis;
using Clock = std::chrono::steady_clock;

// The timer is read a moment after the TIME_WAIT began, so it shows nearly its whole length:
// "about 2 minutes" or more would read above this.
constexpr double kAboutTwoMinutes = 100.0;
// The lower end of the articles' "2 to 4 minutes": still blocked by then, and the claim holds.
constexpr std::chrono::seconds kGiveUpAfter{120};
constexpr Millis kRetryEvery{100};
// Without a terminal there is no line to redraw; a note this often says the program is alive.
constexpr std::chrono::seconds kPlainProgressEvery{15};

std::string seconds_text(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f", seconds);
  return text.data();
}

// Experiment 02's scenario: the server answers one client and closes first, Ctrl+C ends it, and a
// new server process binds the port at once. Returns the new server's bind(); `left_behind` is
// what the socket table held for the port just before.
std::optional<Event> restart_into_time_wait(Lab& lab, Situation& left_behind) {
  const auto address = lab.wildcard();
  lab.you("start the server");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must_receive_text(connection);  // the client's hello: no answer without it
    t.send_text(connection, "message received");
    t.must("close", ::close(connection));  // the server closes first: the TIME_WAIT is its own
    t.wait_for_signal();
  });
  server.must_reach("listen");

  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);  // the receipt
  server.must_reach("close");
  client.receive_text(fd);  // 0 bytes: end of stream, because the server closed first
  client.must("close", ::close(fd));

  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("the old server is gone; look at the port now: ss -tano state time-wait");

  lab.you("start the server again: a new process, no socket options");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address);
  });
  auto bound = restarted.wait_for("bind");
  restarted.reap();
  return bound;
}

// What a verdict on the restart needs: experiment 02's scenario, seen happening.
constexpr auto kRestartNeeds = {Evidence::accepted, Evidence::exchanged, Evidence::server_closed_first,
                                Evidence::server_stopped, Evidence::table_read};

Observation time_wait_timer(Lab& lab) {
  auto left_behind = Situation::unobserved;
  const auto bound = restart_into_time_wait(lab, left_behind);
  auto observation = lab.observe(bound, kRestartNeeds, left_behind);
  if (observation.could_not_run) return observation;
  lab.report_time_waits(observation);
  const auto left = lab.time_wait_seconds_left();
  if (!left) {
    if (observation.outcome == kOk) return observation;  // nothing held the port: no timer to read
    // Refused, but not by a TIME_WAIT: the claim's length cannot be read, so no verdict.
    return lab.could_not_run("the port's TIME_WAIT timer could not be read: the table listed no TIME_WAIT", *bound);
  }
  lab.narrator().line("kernel",
                      "TIME_WAIT timer of port " + std::to_string(lab.port()) + ": " + seconds_text(*left) + " s left");
  observation.fact("seconds_left", seconds_text(*left));
  observation.situation = *left <= 60.5 ? Situation::timer_within_a_minute : Situation::timer_beyond_a_minute;
  // The claim is "refused, for about 2 to 4 minutes": the errno alone shows only the first half.
  observation.detail_holds = *left >= kAboutTwoMinutes;
  return observation;
}

// One line that is redrawn in place on a terminal, so a minute of waiting does not scroll away.
class ProgressLine {
 public:
  explicit ProgressLine(const Lab& lab)
      : lab_(lab), redraw_(!lab.json() && lab.narrator().enabled() && ::isatty(STDOUT_FILENO) == 1) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() { finish(); }

  void show(double elapsed, const std::string& outcome) {
    std::string timer = "no TIME_WAIT listed";
    if (auto table = portreuse::read_socket_table()) {
      for (const auto& entry : portreuse::bound_to_port(*table, lab_.port())) {
        if (entry.is(portreuse::TcpState::time_wait)) timer = "timer " + seconds_text(entry.timer_seconds) + " s left";
      }
    }
    const std::string text = "waiting " + seconds_text(elapsed) + " s: bind " + outcome + ", " + timer;
    if (redraw_) {
      std::cout << "\r  " << lab_.narrator().paint("[you]", portreuse::Tone::dim) << "           " << text << "\033[K"
                << std::flush;
      drawn_ = true;
    } else if (Clock::now() >= next_plain_) {
      lab_.narrator().line("you", text);
      next_plain_ = Clock::now() + kPlainProgressEvery;
    }
  }

  void finish() {
    if (drawn_) std::cout << "\r\033[K" << std::flush;
    drawn_ = false;
  }

 private:
  const Lab& lab_;
  bool redraw_;
  bool drawn_ = false;
  Clock::time_point next_plain_ = Clock::now() + kPlainProgressEvery;
};

Observation time_wait_duration(Lab& lab) {
  const auto started = Clock::now();
  const auto since_start = [&] { return std::chrono::duration<double>(Clock::now() - started).count(); };
  auto left_behind = Situation::unobserved;
  const auto bound = restart_into_time_wait(lab, left_behind);
  auto restart = lab.observe(bound, kRestartNeeds, left_behind);
  if (restart.could_not_run) return restart;
  if (const auto left = lab.time_wait_seconds_left()) restart.fact("seconds_left", seconds_text(*left));
  if (restart.outcome == kOk) {
    restart.situation = Situation::never_held;
    restart.fact("seconds", "0");
    return restart;
  }

  // bind() again and again on a fresh socket, until the kernel lets it through or we give up.
  const auto address = lab.wildcard();
  lab.you("try bind " + address.text() + " (no options) every " + std::to_string(kRetryEvery.count()) +
          " ms until it works, for at most " + std::to_string(kGiveUpAfter.count()) + " s");
  auto you = lab.actor("you");
  you.silent();  // hundreds of tries: the last one is reported below
  ProgressLine progress(lab);
  std::optional<Event> last_bind;
  int tries = 0;
  while (since_start() < static_cast<double>(kGiveUpAfter.count())) {
    progress.show(since_start(),
                  portreuse::outcome_name(portreuse::make_error(last_bind ? last_bind->error : restart.outcome)));
    std::this_thread::sleep_for(kRetryEvery);
    const int fd = you.call("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (fd < 0) return lab.could_not_run("a socket for the next bind() try", *lab.last(Call::socket, Role::other));
    you.call("bind", ::bind(fd, address.raw(), address.raw_length()), address);
    last_bind = *lab.last(Call::bind, Role::other);
    you.call("close", ::close(fd));
    ++tries;
    if (last_bind->ok()) break;
  }
  progress.finish();
  const double seconds = since_start();
  const bool freed = last_bind && last_bind->ok();
  if (last_bind) {
    lab.you((freed ? "after " : "gave up after ") + seconds_text(seconds) + " s and " + std::to_string(tries) +
            " tries, the last one: " + last_bind->text());
  }
  auto situation = Situation::still_held;  // what the last bind() said when the program gave up
  if (freed) {
    lab.show_sockets("the kernel's sockets for the port now:");
    lab.you("measured " + seconds_text(seconds) +
            " s; Linux's TCP_TIMEWAIT_LEN is 60 s; the articles say 2 to 4 "
            "minutes");
    situation = seconds < 55.0    ? Situation::under_a_minute
                : seconds <= 70.0 ? Situation::about_a_minute
                                  : Situation::over_a_minute;
  }
  auto observation = lab.observe(last_bind, kRestartNeeds, situation);
  for (const auto& [key, value] : restart.facts) {
    if (key != "calls") observation.fact(key, value);
  }
  observation.fact("seconds", seconds_text(seconds));
  observation.fact("tries", std::to_string(tries));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const std::string kLongerElsewhere =
    "Where TIME_WAIT is 2 MSL with the MSL of RFC 793 (2 minutes), it lasts 4 minutes; Windows documents 240 s "
    "as the default of TcpTimedWaitDelay on older versions. Neither is observed here.";

const Experiment kExperiment{
    .summary =
        "The articles say a closed port stays blocked for about 2 to 4 minutes. The kernel shows its own "
        "TIME_WAIT timer; read it, and with --long wait it out and measure.",
    .steps =
        {
            Step{
                .id = "time-wait-timer",
                .preview = "A server answers one client, closes first, is stopped with Ctrl+C and started again; then "
                           "read the kernel's TIME_WAIT timer for the port.",
                .claim = "After a close the port is blocked in TIME_WAIT, so bind() fails with 'Address already in "
                         "use', for about 2 to 4 minutes.",
                .source = "\"Port reuse C++ (address reuse)\" (IBM developerWorks)",
                .claimed = EADDRINUSE,
                .elsewhere = kLongerElsewhere,
                .explanations =
                    {
                        {EADDRINUSE, Situation::timer_within_a_minute,
                         "The restart was refused: the server closed first, so its end of the connection is in "
                         "TIME_WAIT and still holds the port. The blocking part of the claim holds. The length does "
                         "not: the kernel's timer (above) started at 60 seconds, the constant TCP_TIMEWAIT_LEN "
                         "compiled into Linux, and nothing near 2 to 4 minutes. Run with --long to watch it run "
                         "out."},
                        {EADDRINUSE, Situation::timer_beyond_a_minute,
                         "The restart was refused by the TIME_WAIT, and its timer shows more than 60 seconds: longer "
                         "than Linux's fixed TCP_TIMEWAIT_LEN. This kernel uses another TIME_WAIT length."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused; the socket table above shows what held the port."},
                        {kOk, Situation::any,
                         "The restart bound the port at once: no TIME_WAIT held it, so there was no timer to read. "
                         "The socket table above shows what the kernel kept."},
                    },
                .run = time_wait_timer,
            },
            Step{
                .id = "time-wait-duration",
                .preview = "The same restart, then bind() again every 100 ms until the port is free (up to 2 "
                           "minutes). Measures how long TIME_WAIT really lasts.",
                .claim = "A closed connection keeps its port blocked for about 2 to 4 minutes: bind() still fails "
                         "with 'Address already in use' after 2 minutes of trying.",
                .source = "\"Port reuse C++ (address reuse)\" (IBM developerWorks)",
                .claimed = EADDRINUSE,
                .elsewhere = kLongerElsewhere,
                .explanations =
                    {
                        {kOk, Situation::about_a_minute,
                         "The port was free after about a minute, measured above, not 2 to 4. Linux does not compute "
                         "TIME_WAIT from a configurable MSL: it is the constant TCP_TIMEWAIT_LEN, 60 seconds, and no "
                         "sysctl changes it (tcp_fin_timeout is about FIN_WAIT2, a different state). The articles' "
                         "figure is RFC 793's 2 MSL with an MSL of 2 minutes, which older systems used."},
                        {kOk, Situation::under_a_minute,
                         "The port was free in less than a minute: shorter than Linux's 60-second TIME_WAIT. "
                         "Something ended the TIME_WAIT early (an RST, or a kernel with another constant)."},
                        {kOk, Situation::over_a_minute,
                         "The port was free within 2 minutes but after more than 70 seconds: longer than Linux's "
                         "60-second TIME_WAIT and its timer's slack. This kernel keeps TIME_WAIT longer."},
                        {kOk, Situation::never_held,
                         "The restart bound the port at once, so there was no TIME_WAIT to wait out: the socket table "
                         "above shows what the kernel kept."},
                        {EADDRINUSE, Situation::still_held,
                         "After 2 minutes bind() was still refused: on this system TIME_WAIT (or something else on "
                         "the port, see above) lasts at least as long as the article says."},
                    },
                .run = time_wait_duration,
                .long_running = true,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
