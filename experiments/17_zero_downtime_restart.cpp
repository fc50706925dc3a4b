// 17-zero-downtime-restart: Restarting without dropping connections, measured.
//
// Shows: four clients send short requests, one after another, while a server is replaced by a new
// one, six ways: stop then start (without and with SO_REUSEADDR), an SO_REUSEPORT overlap with
// net.ipv4.tcp_migrate_req 0 and 1, the listening socket inherited across execve with the
// LISTEN_FDS protocol of socket activation, and the listening socket handed over with
// SCM_RIGHTS. Each request is counted by what the client's calls returned: refused (connect ->
// ECONNREFUSED), reset (recv -> ECONNRESET), timed out, or served (the whole answer). Only the
// losses the restart can cause count as its outcome: a refusal while no socket listened, a reset
// of a connection queued on the old listener when it closed (both timed from the recorded
// events). Any other failure, like a server's failed call (but the bind() -> EADDRINUSE that
// stop-start predicts), means the step could not run.
//
// Every step runs in a private user and network namespace, so the sysctl is set there only.
// The servers behave alike in every step: the new one needs kStartup to get ready (it reads its
// configuration), and an old one told to stop with SIGTERM stops accepting and finishes its
// work for kDrain before it closes its listener, as a graceful shutdown does.
//
// Claims engineers make, discussed in Pingora #427, go-reuseport #6, Envoy #8031 and #15818,
// and in HAProxy's, tableflip's and systemd's documents. Lesson:
// lessons/17-zero-downtime-restart.md
//
// Usage: 17-zero-downtime-restart [--port P] [--json] [--no-color] [--step] [--long]
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "portreuse/lab.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): execve passes it on

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::Millis;
using std::chrono::microseconds;

constexpr int kClients = 4;
constexpr int kRequests = 200;                      // in all, by default: the run stays short
constexpr int kLongRequests = 2000;                 // with --long
constexpr microseconds kPause{300};                 // each client, after a request that was served
constexpr microseconds kBackOff{600};               // ... and after one that failed, before it tries again
constexpr int kServedBeforeRestart = 2 * kClients;  // the restart begins once the old server served these
constexpr Millis kStartup{8};                       // a new server reads its configuration before it serves
constexpr Millis kDrain{3};                         // an old server stops accepting, then finishes its work
constexpr std::string_view kRequest = "GET /\n";
constexpr std::string_view kAnswer = "200 OK\n";
// The hidden argument of the new program image in listen-fds-exec (not in --help).
constexpr std::string_view kInheritedFlag = "--serve-inherited-listener";
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START: the first inherited descriptor

enum class Strategy { stop_start, stop_start_reuseaddr, reuseport_overlap, reuseport_migrate, listen_fds, scm_rights };

// ---- Plumbing: processes inside the namespace, and the signals a server waits for -----------

// Forks a process of the namespace that runs body and exits; a failed must() ends it with 1.
pid_t start_process(Trace& t, const std::function<void()>& body) {
  const int pid = t.must("fork", ::fork());
  if (pid == 0) {
    ::alarm(10);  // alarm() is not inherited across fork(): each process bounds its own life
    try {
      body();
    } catch (const ScenarioBroke&) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  return pid;
}

// SIGTERM (stop), SIGHUP (exec the new image), SIGUSR2 (hand the listener over) arrive on a
// descriptor, so the serving loop waits for a connection or a signal in one poll(). A server
// without it could not be told to go: the step cannot run (a quiet call: a line only when it fails).
int signal_descriptor(const Trace& server) {
  sigset_t signals;
  sigemptyset(&signals);
  for (const int number : {SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&signals, number);
  ::sigprocmask(SIG_BLOCK, &signals, nullptr);  // inherited across execve, as the new image needs
  auto t = server.alongside(server.actor(), server.role()).quiet();
  return t.must("signalfd", ::signalfd(-1, &signals, SFD_CLOEXEC), "SIGTERM SIGHUP SIGUSR2");
}

// Whether a child of this process still runs; one that ended is left for waitpid() to reap.
bool running(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

// Whether a child ended other than by exit status 0: a call it needed failed, or a signal.
bool broke_down(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return false;
  }
  return info.si_code != CLD_EXITED || info.si_status != 0;
}

// Waits (at most 3 s) for the one byte the old server writes when it listens (a readiness note,
// as systemd's sd_notify("READY=1")), and for the next, once it has served kServedBeforeRestart.
// Gives up at once when `worth_waiting` says the byte can no longer come (the old server or the
// load has ended), so that a broken step ends in milliseconds.
bool wait_ready(int fd, const std::function<bool()>& worth_waiting) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  pollfd ready{fd, POLLIN, 0};
  char byte = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (::poll(&ready, 1, 1) == 1) return ::read(fd, &byte, 1) == 1;
    if (!worth_waiting()) return ::poll(&ready, 1, 0) == 1 && ::read(fd, &byte, 1) == 1;
  }
  return false;
}

// A process keeps only the descriptors it uses: under a tight `ulimit -n` the one a scenario call
// needs must not be taken by a pipe end another process reads.
void close_unused(std::initializer_list<int> descriptors) {
  for (const int fd : descriptors) {
    if (fd >= 0) ::close(fd);
  }
}

// ---- The server ---------------------------------------------------------------------------

// Answers one request per connection, closing first, until a signal comes; returns which one
// (0 when nothing came for 3 s, -1 when accept failed). A connection and a signal at once: the
// signal wins. Its calls are quiet (hundreds of them): only a failure gets a line. `progress`:
// where to say that the load is on (one byte after kServedBeforeRestart requests), or -1.
int serve(const Trace& server, int listener, int signals, int progress = -1) {
  auto t = server.alongside(server.actor(), server.role()).quiet();
  int served = 0;
  for (;;) {
    std::array<pollfd, 2> ready{{{signals, POLLIN, 0}, {listener, POLLIN, 0}}};
    if (::poll(ready.data(), ready.size(), 3000) <= 0) return 0;
    if ((ready[0].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      if (::read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        const int number = static_cast<int>(info.ssi_signo);
        server.alongside(server.actor(), server.role())
            .note("got " + (number == SIGUSR2 ? std::string("SIGUSR2") : portreuse::signal_name(number)) +
                  ": stops accepting");
        return static_cast<int>(info.ssi_signo);
      }
      continue;
    }
    const Returned accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    const int connection = t.call("accept", accepted);
    // A connection that went away in its queue is not the server's fault; anything else (no
    // descriptor left: EMFILE) would fail again at once: stop, and leave the queue to close.
    if (connection < 0 && (accepted.error == ECONNABORTED || accepted.error == EINTR)) continue;
    if (connection < 0) return -1;
    t.receive_text(connection);
    t.send_text(connection, kAnswer);
    t.call("close", ::close(connection));  // the server closes first: its TIME_WAITs hold the port
    if (++served == kServedBeforeRestart && progress >= 0) (void)!::write(progress, "L", 1);
  }
}

// A listening socket on the step's address, with the option the strategy needs on it.
int open_listener(Trace& t, const Endpoint& address, int option, const char* option_name) {
  const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (option != 0) {
    const int on = 1;
    t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, option, &on, sizeof on), std::string(option_name) + "=1");
  }
  if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) != 0) return -1;
  t.must("listen", ::listen(listener, 64));
  return listener;
}

// The old server's way out after `signal`. SIGTERM: finish the work in hand (kDrain) with the
// listener still open, then close it. SIGUSR2: send the listener over `handover` first.
// SIGHUP: become the new program image, which inherits the listener as fd 3.
void leave(const Trace& server, int signal, int listener, int handover) {
  auto t = server.alongside(server.actor(), server.role());  // its calls are placed from now on
  if (signal == SIGTERM) {
    std::this_thread::sleep_for(kDrain);
    t.must("close", ::close(listener), "the listening socket");
    return;
  }
  if (signal == SIGUSR2) {
    // One byte of data carries the descriptor: SCM_RIGHTS rides on a real message.
    char byte = 'L';
    iovec data{&byte, 1};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* rights = CMSG_FIRSTHDR(&message);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(rights), &listener, sizeof listener);
    t.must("sendmsg", ::sendmsg(handover, &message, MSG_NOSIGNAL), "SCM_RIGHTS: the listening socket");
    t.must("close", ::close(listener), "its own copy: the new server holds the socket now");
    return;
  }
  if (signal == SIGHUP) {
    // The socket-activation protocol: descriptors from 3 on, their count and the pid they are
    // meant for in the environment (sd_listen_fds(3)). execve keeps the pid.
    if (listener != kListenFdsStart) {
      t.must("dup2", ::dup2(listener, kListenFdsStart), "listener to fd 3 (SD_LISTEN_FDS_START)");
      t.must("close", ::close(listener), "the copy above fd 3");
    }
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDNAMES", "http", 1);
    const auto report = t.keep_across_exec();
    if (!report) throw ScenarioBroke{"the new image could not report"};  // the fcntl failure is recorded
    ::putenv(const_cast<char*>(report->c_str()));  // NOLINT: putenv keeps the pointer; execve follows
    std::string self = "/proc/self/exe";
    std::string flag(kInheritedFlag);
    std::array<char*, 3> argv{self.data(), flag.data(), nullptr};
    const std::string words = "/proc/self/exe " + flag + " LISTEN_FDS=1 LISTEN_PID=" + std::to_string(::getpid());
    t.note("execve " + words + ": a successful execve does not return; the new program reports next");
    t.call("execve", ::execve(self.c_str(), argv.data(), environ), words);
    ::_exit(127);  // only when execve failed
  }
}

// The new program image of listen-fds-exec: what sd_listen_fds() does, then serving.
int serve_inherited_listener() {
  auto resumed = Trace::resume_after_exec();
  if (!resumed) {
    const std::string why = "17-zero-downtime-restart: " + std::string(kInheritedFlag) +
                            " is for the program's own restart (LISTEN_FDS); see --help\n";
    (void)!::write(STDERR_FILENO, why.data(), why.size());
    return 2;
  }
  auto t = resumed->alongside("new program", Role::server);
  const char* pid = std::getenv("LISTEN_PID");
  const char* count = std::getenv("LISTEN_FDS");
  if (pid == nullptr || count == nullptr || std::to_string(::getpid()) != pid || std::string_view(count) != "1") {
    t.note("LISTEN_PID or LISTEN_FDS do not name this process: nothing inherited");
    return 1;
  }
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDNAMES");
  std::this_thread::sleep_for(kStartup);  // reads its configuration; clients wait in the queue
  int listening = 0;
  socklen_t length = sizeof listening;
  t.call("getsockopt", ::getsockopt(kListenFdsStart, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length),
         "fd 3 SO_ACCEPTCONN (a listening socket: 1)");
  if (listening != 1) return 1;
  try {
    const int signals = signal_descriptor(t);
    return serve(t, kListenFdsStart, signals) < 0 ? 1 : 0;  // 1: its accept failed
  } catch (const ScenarioBroke&) {
    return 1;
  }
}

// ---- The load -----------------------------------------------------------------------------

// One client: `count` requests, one after another with a short pause. Every call is recorded
// silently (hundreds of them); the step counts what they returned and narrates the totals.
void run_load(Trace& t, const Endpoint& to, int count) {
  t.silent();
  for (int request = 0; request < count; ++request) {
    // socket() through the trace: connect and recv give up after 3 s (SO_SNDTIMEO, SO_RCVTIMEO).
    const int fd = t.must("socket", ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    std::string answer;
    if (t.call("connect", ::connect(fd, to.raw(), to.raw_length()), to) == 0 && t.send_text(fd, kRequest) >= 0) {
      for (auto part = t.receive_text(fd); !part.empty(); part = t.receive_text(fd)) answer += part;
    }  // the answer, then end of stream (or the error that ends the request)
    t.call("close", ::close(fd));
    std::this_thread::sleep_for(answer == kAnswer ? kPause : kBackOff);
  }
}

// When the restart itself can make a client's call fail, read from the recorded events: their
// `at` (CLOCK_MONOTONIC) compares across the namespace's processes. A call that waits (recv,
// accept) is placed when it returned, any other when it began (Trace::call), so each span is
// taken wide enough to hold the whole call.
struct Span {
  std::int64_t from = 0;
  std::int64_t until = 0;
};
struct Windows {
  // The old listener's close(): after the old server's previous event (its "got SIGTERM"), and
  // over by the time close() returned. A connection queued on it then is reset.
  std::optional<Span> old_close;
  // No socket listened (stop-first only): from the old listener's close until the new server's
  // listen() had returned (its next event), or to the end when it never listened. A connect()
  // then is refused.
  std::optional<Span> no_listener;
};

// What became of each request, from the calls its client made.
struct Counts {
  int refused = 0;
  int reset = 0;
  int timed_out = 0;
  int other = 0;
  int served = 0;
  std::optional<Event> first_reset, first_timeout, first_other, first_refused;  // their failing calls
  std::optional<Event> last_served;
  std::int64_t last_request_at = 0;
  // The first client call that failed in a way the restart cannot explain: a refusal while a
  // socket listened, a reset of a connection the old listener's close did not drop, a timeout,
  // any other errno (an injected fault, a descriptor limit).
  std::optional<Event> unexplained;
  [[nodiscard]] int lost() const { return refused + reset + timed_out + other; }
  // The step's answer: the first loss of the worst kind seen. Worst are the losses whose fate
  // the client cannot know (reset, then timed out: the request was sent, the answer never
  // came, it may or may not have been carried out), then any other failure, then refused
  // (nothing was sent: safe to try again); 0 (the last served recv) when nothing was lost.
  // By kind, not by time: which of four clients failed first is a matter of scheduling.
  [[nodiscard]] std::optional<Event> answer() const {
    for (const auto* loss : {&first_reset, &first_timeout, &first_other, &first_refused}) {
      if (*loss) return *loss;
    }
    return last_served;
  }
};

bool timed_out(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == ETIMEDOUT || error == EINPROGRESS;
}

bool within(const std::optional<Span>& span, std::int64_t began, std::int64_t ended) {
  return span && ended >= span->from && began <= span->until;
}

Counts count_requests(const std::vector<Event>& events, std::size_t from, const Windows& windows) {
  struct Request {
    std::optional<Event> failed;
    std::optional<Event> last_recv;
    std::size_t bytes = 0;
    std::int64_t began = 0;  // when its connect() began
  };
  std::map<pid_t, Request> open;  // per client process: the request in progress
  Counts counts;
  const auto unexplained = [&](const Event& event) {
    if (!counts.unexplained) counts.unexplained = event;
  };
  for (std::size_t index = from; index < events.size(); ++index) {
    const auto& event = events[index];
    if (event.role != Role::client) continue;
    auto& request = open[event.pid];
    if (event.call == Call::socket) {
      request = Request{};
      counts.last_request_at = event.at;
      if (!event.ok()) unexplained(event);  // no descriptor left: the client stops there
    } else if (event.call == Call::connect || event.call == Call::send || event.call == Call::recv) {
      if (event.call == Call::connect) request.began = event.at;
      if (!event.ok() && !request.failed) request.failed = event;
      if (event.call == Call::recv && event.ok()) {
        request.bytes += static_cast<std::size_t>(event.value);
        request.last_recv = event;
      }
    } else if (event.call == Call::close) {
      if (!event.ok()) unexplained(event);
      // This close() began when the failed call returned: the failure lies in [began, event.at].
      if (request.failed) {
        const auto& failed = *request.failed;
        const auto tally = [&](int& count, std::optional<Event>& first, bool explained) {
          ++count;
          if (!first) first = failed;
          if (!explained) unexplained(failed);
        };
        if (failed.call == Call::connect && failed.error == ECONNREFUSED) {
          // Some of the connect() inside the time no socket listened.
          tally(counts.refused, counts.first_refused, within(windows.no_listener, request.began, event.at));
        } else if (failed.call != Call::connect && (failed.error == ECONNRESET || failed.error == EPIPE)) {
          // Connected before the old listener's close() was over, reset after it began.
          tally(counts.reset, counts.first_reset, within(windows.old_close, request.began, event.at));
        } else if (timed_out(failed.error)) {
          tally(counts.timed_out, counts.first_timeout, false);
        } else {
          tally(counts.other, counts.first_other, false);
        }
      } else if (request.bytes == kAnswer.size() && request.last_recv && request.last_recv->value == 0) {
        ++counts.served;
        counts.last_served = request.last_recv;
      } else {
        ++counts.other;  // an answer cut short without an error
        if (!counts.first_other) counts.first_other = request.last_recv;
      }
      open.erase(event.pid);
    }
  }
  return counts;
}

std::string_view strategy_name(Strategy strategy) {
  switch (strategy) {
    case Strategy::stop_start: return "stop, start";
    case Strategy::stop_start_reuseaddr: return "stop, start, SO_REUSEADDR";
    case Strategy::reuseport_overlap: return "SO_REUSEPORT, migrate_req=0";
    case Strategy::reuseport_migrate: return "SO_REUSEPORT, migrate_req=1";
    case Strategy::listen_fds: return "LISTEN_FDS across execve";
    case Strategy::scm_rights: return "SCM_RIGHTS handover";
  }
  return "?";
}

std::string cell(int value, std::size_t width) {
  auto text = std::to_string(value);
  return std::string(width > text.size() ? width - text.size() : 0, ' ') + text;
}

std::string table_heading() {
  return "strategy                      refused  reset  timed out  other  served";
}

std::string table_row(Strategy strategy, const Counts& counts) {
  std::string name(strategy_name(strategy));
  name.resize(28, ' ');
  return name + cell(counts.refused, 9) + cell(counts.reset, 7) + cell(counts.timed_out, 11) + cell(counts.other, 7) +
         cell(counts.served, 8);
}

// ---- One restart under load, in a private namespace ---------------------------------------

struct Measured {
  Counts counts;
  std::optional<Observation> stopped;  // skipped or could not run: why
  std::optional<Event> new_bind;       // the new server's bind, when it made one
  // The first call that failed in a way the restart does not explain: a server's or the
  // namespace's (but the new server's bind() -> EADDRINUSE that stop-start predicts), else a
  // client's (Counts::unexplained). Its measurement is not clean: the step could not run.
  std::optional<Event> unexplained;
  bool restarted = false;       // the strategy's restart really happened
  bool served_by_old = false;   // the old server accepted connections of the load
  bool ran_through = false;     // the namespace process ended with status 0: nothing broke off
  std::int64_t restart_at = 0;  // the signal that began it
};

// The spans of Windows, from the old server's close() of its listener (a call of its own trace
// in leave(), the only one not quiet) and the new server's listen().
Windows windows_of(const std::vector<Event>& events, std::size_t from, Strategy strategy, pid_t old_pid) {
  Windows windows;
  if (strategy == Strategy::listen_fds || strategy == Strategy::scm_rights) return windows;  // never closed
  std::optional<std::size_t> closed;
  std::optional<std::size_t> listened;
  for (std::size_t index = from; index < events.size(); ++index) {
    const auto& event = events[index];
    if (event.role != Role::server || !event.ok()) continue;
    if (event.pid == old_pid && event.call == Call::close && !event.quiet) closed = index;
    if (event.pid != old_pid && event.call == Call::listen && !listened) listened = index;
  }
  if (!closed) return windows;
  // leave() makes the close() with a trace of its own, whose first call is placed when it returned.
  Span close{events[*closed].at, events[*closed].at};
  for (std::size_t index = *closed; index-- > from;) {
    if (events[index].pid == old_pid) {
      close.from = std::min(close.from, events[index].at);
      break;
    }
  }
  windows.old_close = close;
  if (strategy != Strategy::stop_start && strategy != Strategy::stop_start_reuseaddr) return windows;
  Span gap{close.from, std::numeric_limits<std::int64_t>::max()};
  if (listened) {
    for (std::size_t index = *listened + 1; index < events.size(); ++index) {
      if (events[index].pid == events[*listened].pid) {
        gap.until = events[index].at;
        break;
      }
    }
  }
  windows.no_listener = gap;
  return windows;
}

Measured restart_under_load(Lab& lab, Strategy strategy, int requests) {
  const auto address = lab.wildcard();
  const auto to = lab.loopback();
  const bool reuseport = strategy == Strategy::reuseport_overlap || strategy == Strategy::reuseport_migrate;
  std::vector<std::pair<std::string, std::string>> sysctls;
  if (reuseport) sysctls.emplace_back("net.ipv4.tcp_migrate_req", strategy == Strategy::reuseport_migrate ? "1" : "0");
  int option = 0;
  const char* option_name = "";
  if (strategy == Strategy::stop_start_reuseaddr) option = SO_REUSEADDR, option_name = "SO_REUSEADDR";
  if (reuseport) option = SO_REUSEPORT, option_name = "SO_REUSEPORT";
  const std::size_t from = lab.events().size();

  lab.you("in a private namespace: " + std::to_string(kClients) + " clients send " + std::to_string(requests) +
          " requests while the server restarts (" + std::string(strategy_name(strategy)) + ")");
  auto inside = lab.spawn("namespace", Role::other, [&](Trace& t) {
    enter_private_network(t, sysctls);
    auto you = t.alongside("you", Role::other);
    // From the restart on "you" speak through a trace of their own, so the narration places
    // those calls after that moment.
    auto restarting = t.alongside("you", Role::other);
    // The step's processes: however the step ends, each is stopped and reaped (end_step).
    pid_t old_server = -1;
    int old_status = -1;  // once reaped: its wait status
    pid_t waiting_server = -1;
    std::vector<pid_t> clients;
    bool broken = false;  // the scenario cannot go on: stop the load rather than let it run out
    const auto end_step = [&](Trace& who) {
      for (const pid_t client : clients) {
        if (broken && running(client)) {
          who.call("kill", ::kill(client, SIGKILL), "SIGKILL to a client: the step cannot go on");
        }
        int status = 0;
        who.call("waitpid", ::waitpid(client, &status, 0), "a client");
      }
      if (waiting_server > 0) {
        who.call("kill", ::kill(waiting_server, SIGKILL), "SIGKILL to the new server: the step is over");
        int status = 0;
        who.call("waitpid", ::waitpid(waiting_server, &status, 0), "the new server");
      }
      // The old server: it has left by itself (stop-start, overlap, handover), or it is now the
      // new program image (listen-fds-exec), or it never got the signal.
      if (old_server > 0 && old_status < 0) {
        int status = 0;
        const pid_t ended = ::waitpid(old_server, &status, WNOHANG);
        if (ended == 0) {
          who.call("kill", ::kill(old_server, SIGKILL), "SIGKILL to the old server's pid: the step is over");
          who.call("waitpid", ::waitpid(old_server, &status, 0), "the old server's pid");
          return;
        }
        if (ended == old_server) old_status = status;
      }
      if (old_server > 0 && old_status >= 0 && WIFEXITED(old_status)) {
        who.call("exited", WEXITSTATUS(old_status),
                 "the old server left by itself: exit status " + std::to_string(WEXITSTATUS(old_status)));
      }
    };

    // Every pipe end a process does not use is closed in it (close_unused).
    std::array<int, 2> ready{-1, -1};
    std::array<int, 2> pair{-1, -1};
    std::array<int, 2> go{-1, -1};
    try {
      // The old server, and the pipe on which it says it is ready (and, for SCM_RIGHTS, the
      // Unix socket pair that will carry its listener to the new server).
      you.must("pipe", ::pipe2(ready.data(), O_CLOEXEC), "readiness");
      if (strategy == Strategy::scm_rights) {
        you.must("socketpair", ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.data()),
                 "AF_UNIX: the handover channel");
      }
      old_server = start_process(you, [&]() {
        close_unused({ready[0], pair[1]});
        auto server = t.alongside("old server", Role::server);
        const int signals = signal_descriptor(server);
        const int listener = open_listener(server, address, option, option_name);
        if (listener < 0) return;
        (void)!::write(ready[1], "R", 1);
        const int signal = serve(server, listener, signals, ready[1]);
        if (signal < 0) throw ScenarioBroke{"its accept failed"};
        leave(server, signal, listener, pair[0]);
      });
      if (!wait_ready(ready[0], [&] { return running(old_server); })) {
        you.note("the old server never got ready");
        broken = true;
      }
    } catch (const ScenarioBroke&) {
      broken = true;
      end_step(you);
      throw;
    }
    if (broken) {
      end_step(you);
      throw ScenarioBroke{"the old server never got ready"};  // the namespace ends with status 1
    }

    try {
      // The new server's process is forked before the load and waits for its start (a byte on
      // `go`): on a busy machine a fork can take longer than the load, and what a fork costs is
      // not what the strategies differ in. Its way to a listener is the strategy.
      you.must("pipe", ::pipe2(go.data(), O_CLOEXEC), "the new server's start");
      std::function<int(Trace&)> get_listener;
      switch (strategy) {
        case Strategy::stop_start:
        case Strategy::stop_start_reuseaddr:
          get_listener = [&](Trace& server) { return open_listener(server, address, option, option_name); };
          break;
        case Strategy::reuseport_overlap:
        case Strategy::reuseport_migrate:
          // The new server joins the port's SO_REUSEPORT group, then tells the old one to go.
          get_listener = [&](Trace& server) {
            const int listener = open_listener(server, address, option, option_name);
            if (listener >= 0) server.must("kill", ::kill(old_server, SIGTERM), "SIGTERM: the old server may stop");
            return listener;
          };
          break;
        case Strategy::listen_fds: break;  // the old server's own pid becomes the new program
        case Strategy::scm_rights:
          get_listener = [&](Trace& server) {
            server.must("kill", ::kill(old_server, SIGUSR2), "SIGUSR2: hand me the listener");
            char byte = 0;
            iovec data{&byte, 1};
            alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
            msghdr message{};
            message.msg_iov = &data;
            message.msg_iovlen = 1;
            message.msg_control = control.data();
            message.msg_controllen = control.size();
            const timeval limit{2, 0};
            server.must("setsockopt", ::setsockopt(pair[1], SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit),
                        "SO_RCVTIMEO=2s");
            server.must("recvmsg", ::recvmsg(pair[1], &message, MSG_CMSG_CLOEXEC), "SCM_RIGHTS");
            const cmsghdr* rights = CMSG_FIRSTHDR(&message);
            if (rights == nullptr || rights->cmsg_type != SCM_RIGHTS) {
              // The byte came without the descriptor: with MSG_CTRUNC, the kernel could not
              // install one here (no free descriptor), and dropped it.
              server.note((message.msg_flags & MSG_CTRUNC) != 0
                              ? "recvmsg: the byte came, the descriptor did not (MSG_CTRUNC)"
                              : "recvmsg: the byte came without a descriptor");
              throw ScenarioBroke{"no listener came"};
            }
            int listener = -1;
            std::memcpy(&listener, CMSG_DATA(rights), sizeof listener);
            return listener;
          };
          break;
      }
      if (get_listener) {
        you.note("forks the new server now; it waits until it is told to start");
        waiting_server = start_process(you, [&]() {
          close_unused({ready[0], ready[1], go[1], pair[0]});
          if (!wait_ready(go[0], [] { return true; })) return;  // no start within 3 s: the restart never came
          auto server = t.alongside("new server", Role::server);
          const int signals = signal_descriptor(server);
          std::this_thread::sleep_for(kStartup);
          const int listener = get_listener(server);
          if (listener >= 0 && serve(server, listener, signals) < 0) throw ScenarioBroke{"its accept failed"};
        });
      }

      // The load: every client in a process of its own.
      you.note("starts " + std::to_string(kClients) + " clients, " + std::to_string(requests / kClients) +
               " requests each, " + std::to_string(kPause.count()) + " us apart (" + std::to_string(kBackOff.count()) +
               " us after a failure)");
      for (int client = 0; client < kClients; ++client) {
        clients.push_back(start_process(you, [&]() {
          close_unused({ready[0], ready[1], pair[0], pair[1], go[0], go[1]});
          auto load = t.alongside("client", Role::client);
          run_load(load, to, requests / kClients);
        }));
      }
      const auto load_runs = [&] {
        return running(old_server) && std::any_of(clients.begin(), clients.end(), running);
      };
      if (!wait_ready(ready[0], load_runs)) {
        you.note("the old server served no load");
        broken = true;
      }
      if (!broken) {
        restarting.note("the old server has served " + std::to_string(kServedBeforeRestart) + " requests: restart now");

        // The restart, one strategy each.
        const auto start_new_server = [&]() {
          restarting.note("the new server starts: it needs " + std::to_string(kStartup.count()) + " ms to get ready");
          (void)!::write(go[1], "G", 1);
        };
        switch (strategy) {
          case Strategy::stop_start:
          case Strategy::stop_start_reuseaddr:
            restarting.must("kill", ::kill(old_server, SIGTERM), "SIGTERM to the old server");
            restarting.must("waitpid", ::waitpid(old_server, &old_status, 0), "the old server");
            start_new_server();
            break;
          case Strategy::reuseport_overlap:
          case Strategy::reuseport_migrate:
          case Strategy::scm_rights: start_new_server(); break;
          case Strategy::listen_fds:
            restarting.must("kill", ::kill(old_server, SIGHUP), "SIGHUP: the old server execs the new program");
            break;
        }

        // The load runs out, unless a server breaks down first (a call it needed failed): then
        // the clients are stopped, rather than left to wait on a queue nobody reads.
        const auto broke = [&](pid_t pid) { return pid > 0 && broke_down(pid); };
        while (std::any_of(clients.begin(), clients.end(), running)) {
          if ((old_status < 0 && broke(old_server)) || broke(waiting_server)) {
            restarting.note("a server ended on a failure: the clients are stopped");
            broken = true;
            break;
          }
          std::this_thread::sleep_for(Millis(1));
        }
      }
    } catch (const ScenarioBroke&) {
      broken = true;
      end_step(restarting);
      throw;
    }
    end_step(restarting);
    if (broken) throw ScenarioBroke{"the step broke off"};  // the namespace ends with status 1
  });

  Measured measured;
  const auto unshared = inside.wait_for("unshare");
  if (unshared && !unshared->ok()) {
    inside.reap();
    measured.stopped = lab.skip("recv", "unshare(CLONE_NEWUSER | CLONE_NEWNET) returned " +
                                            portreuse::describe_outcome(portreuse::make_error(unshared->error)) +
                                            ": this user may not create namespaces here");
    return measured;
  }
  // Read the namespace's reports as they come (thousands of them) until it ends. It reports
  // "exited" once, for its old server; the namespace process's own end is recorded by reap().
  inside.wait_for("socket_table", Millis(20000));  // never reported: reads on until the namespace ends

  const auto& events = lab.events();
  pid_t old_pid = 0;
  for (std::size_t index = from; index < events.size(); ++index) {
    const auto& event = events[index];
    if (event.role != Role::server) continue;
    if (old_pid == 0) old_pid = event.pid;
    if (event.pid == old_pid && event.call == Call::accept && event.ok()) measured.served_by_old = true;
    if (event.call == Call::bind && event.pid != old_pid) measured.new_bind = event;
  }
  for (std::size_t index = from; index < events.size(); ++index) {
    const auto& event = events[index];
    // The signal that began the restart (SIGTERM, SIGHUP or SIGUSR2 to the old server).
    if (event.call == Call::kill && event.ok() && measured.restart_at == 0) measured.restart_at = event.at;
    // The restart happened: the old server left by itself (exit 0), or its pid runs the new
    // program image, which found the inherited listener.
    const bool old_left =
        strategy != Strategy::listen_fds && measured.restart_at != 0 && event.call == Call::exited && event.value == 0;
    const bool exec_done =
        strategy == Strategy::listen_fds && event.call == Call::getsockopt && event.ok() && event.pid == old_pid;
    if (old_left || exec_done) measured.restarted = true;
    // Any failure outside the load but the one the strategy predicts: stop-start's new server
    // finds the port held by the old server's TIME_WAITs (lesson 02). Any other errno there
    // (or any failed bind with SO_REUSEADDR or SO_REUSEPORT) means the restart did not happen.
    const bool predicted = strategy == Strategy::stop_start && event.call == Call::bind && event.pid != old_pid &&
                           event.error == EADDRINUSE;
    if (!measured.unexplained && !event.ok() && event.role != Role::client && event.call != Call::note &&
        event.call != Call::exited && !predicted) {
      measured.unexplained = event;
    }
  }
  const auto ended = inside.reap();
  measured.ran_through = ended && ended->exited && ended->code == 0;
  measured.counts = count_requests(events, from, windows_of(events, from, strategy, old_pid));
  if (!measured.unexplained) measured.unexplained = measured.counts.unexplained;
  return measured;
}

// ---- The steps ----------------------------------------------------------------------------

constexpr std::string_view kNotExplained = "a call failed in a way this restart does not explain";

Observation judge_restart(Lab& lab, Strategy strategy, const Measured& measured) {
  const auto& counts = measured.counts;
  lab.narrator().table("load", "what the clients' calls returned:", {table_heading(), table_row(strategy, counts)});
  // A verdict needs the restart itself, and a load that ran across it: connections the old
  // server accepted, and requests made after the signal that began the restart.
  Observation observation;
  // After a stop, the new server must have tried its bind() while the load still ran.
  const bool stop_first = strategy == Strategy::stop_start || strategy == Strategy::stop_start_reuseaddr;
  const bool bind_in_load = measured.new_bind && counts.last_request_at > measured.new_bind->at;
  if (measured.unexplained) {
    observation = lab.could_not_run(kNotExplained, *measured.unexplained);
  } else if (!measured.ran_through || !measured.served_by_old || !measured.restarted || measured.restart_at == 0 ||
             counts.last_request_at <= measured.restart_at || (stop_first && !bind_in_load) || counts.other > 0) {
    // The failures of the load are its outcomes, not the cause: name the first other one.
    observation = lab.could_not_run("the load did not run across a restart");
    for (const auto& event : lab.events()) {
      if (event.ok() || event.role == Role::client || event.call == Call::note || event.call == Call::exited) continue;
      observation = lab.could_not_run("the load did not run across a restart", event);
      break;
    }
  } else {
    const auto answer = counts.answer();
    auto situation = Situation::served_after_restart;
    if (measured.new_bind && !measured.new_bind->ok()) situation = Situation::new_server_not_listening;
    observation = lab.observe(answer, {Evidence::listening, Evidence::accepted}, situation);
  }
  observation.fact_text("strategy", strategy_name(strategy));
  observation.fact("clients", std::to_string(kClients));
  observation.fact("requests", std::to_string(counts.lost() + counts.served));
  observation.fact("refused", std::to_string(counts.refused));
  observation.fact("reset", std::to_string(counts.reset));
  observation.fact("timed_out", std::to_string(counts.timed_out));
  observation.fact("other", std::to_string(counts.other));
  observation.fact("served", std::to_string(counts.served));
  if (measured.new_bind) {
    observation.fact_text(
        "new_server_bind",
        measured.new_bind->ok() ? "ok" : portreuse::outcome_name(portreuse::make_error(measured.new_bind->error)));
  }
  return observation;
}

Observation run_strategy(Lab& lab, Strategy strategy) {
  if (strategy == Strategy::reuseport_migrate && !sysctl_value("net.ipv4.tcp_migrate_req")) {
    return lab.skip("recv", "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 and later)");
  }
  const auto measured = restart_under_load(lab, strategy, kRequests);
  if (measured.stopped) return *measured.stopped;
  return judge_restart(lab, strategy, measured);
}

// Each strategy is a step of the table below: strategy_step<Strategy::stop_start> and so on.
template <Strategy strategy>
Observation strategy_step(Lab& lab) {
  return run_strategy(lab, strategy);
}

// --long: every strategy again with ten times the requests, in one table; the answer is the
// first request the three handover strategies lost (0: none).
Observation heavier_load(Lab& lab) {
  std::vector<std::string> rows{table_heading()};
  std::optional<Event> first_loss;
  std::optional<Event> last_served;
  bool all_ran = true;
  std::string refused_order;
  std::vector<std::pair<int, Strategy>> by_refused;
  for (const auto strategy : {Strategy::stop_start, Strategy::stop_start_reuseaddr, Strategy::reuseport_overlap,
                              Strategy::reuseport_migrate, Strategy::listen_fds, Strategy::scm_rights}) {
    if (strategy == Strategy::reuseport_migrate && !sysctl_value("net.ipv4.tcp_migrate_req")) continue;
    const auto measured = restart_under_load(lab, strategy, kLongRequests);
    if (measured.stopped) return *measured.stopped;
    if (measured.unexplained) return lab.could_not_run(kNotExplained, *measured.unexplained);
    all_ran = all_ran && measured.ran_through && measured.restarted && measured.counts.served > 0;
    rows.push_back(table_row(strategy, measured.counts));
    by_refused.emplace_back(measured.counts.refused, strategy);
    const bool handover =
        strategy == Strategy::reuseport_migrate || strategy == Strategy::listen_fds || strategy == Strategy::scm_rights;
    if (handover && measured.counts.lost() > 0 && !first_loss) first_loss = measured.counts.answer();
    if (handover && measured.counts.last_served) last_served = measured.counts.last_served;
  }
  lab.narrator().table("load",
                       "what the clients' calls returned, " + std::to_string(kLongRequests) + " requests each:", rows);
  if (!all_ran) return lab.could_not_run("a restart did not happen under the load");
  auto observation = lab.observe(first_loss ? first_loss : last_served, {Evidence::listening, Evidence::accepted});
  std::vector<std::string> table(rows.begin() + 1, rows.end());
  observation.fact("table", portreuse::json_string_array(table));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from -------------------

const std::string kLoadWords =
    "The answer is the worst loss seen (a reset, then a refusal: the call that failed and its errno), or the last "
    "recv of a served request when none was lost. A failure the restart cannot cause (a refusal while a socket "
    "listened, a reset the old listener's close did not make, a timeout, any other errno) means the step could not "
    "run.";

// Only the losses a strategy's restart can cause have an explanation: any other failure makes the
// step "could not run" (Windows), so it never needs one. The stop-first steps, whose gap also
// refuses connections, list theirs in full.
std::vector<Explanation> losses(std::string when_reset, std::string when_none) {
  return {
      {ECONNRESET, Situation::any, std::move(when_reset)},
      {kOk, Situation::any, std::move(when_none)},
  };
}

const Experiment kExperiment{
    .summary =
        "Four clients send short requests while the server is replaced, six ways. The table counts "
        "what the clients' calls returned: refused, reset, timed out, served. " +
        kLoadWords + " With --long, 2,000 requests per strategy.",
    .steps =
        {
            Step{
                .id = "stop-start",
                .preview = "SIGTERM to the server; when it has gone, start a new one (no options).",
                .claim = "A quick stop and start loses no connections: clients hardly notice a restart.",
                .source = "a common belief; issue 12's list: HAProxy, tableflip, systemd avoid it",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {ECONNRESET, Situation::new_server_not_listening,
                         "The connections that queued on the old listener while it finished its work were "
                         "reset when it closed. Then the new server's bind() failed with EADDRINUSE: the old "
                         "server had closed its connections first, and their TIME_WAITs hold the port (lesson "
                         "02). From then on no one listened, and every connect() was refused."},
                        {ECONNRESET, Situation::any,
                         "The connections queued on the old listener were reset when it closed, and connect() "
                         "was refused while no server listened."},
                        {ECONNREFUSED, Situation::any,
                         "No connection waited on the old listener when it closed; the first loss was a "
                         "connect() refused while no server listened."},
                        {kOk, Situation::any, "Every request was served: the restart fell between requests."},
                    },
                .run = strategy_step<Strategy::stop_start>,
            },
            Step{
                .id = "stop-start-reuseaddr",
                .preview = "The same with SO_REUSEADDR on the old and the new listener.",
                .claim = "SO_REUSEADDR is enough for a restart: the new server binds at once, so nothing is lost.",
                .source = "a common belief; issue 12's list: HAProxy, tableflip, systemd",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {ECONNRESET, Situation::any,
                         "SO_REUSEADDR did its part: the new server bound the port despite the TIME_WAITs. But "
                         "between the old listener's close() and the new one's listen() there was no listening "
                         "socket: the connections queued on the old one were reset when it closed, and every "
                         "connect() in the gap was refused. The option fixes bind(), not the gap."},
                        {ECONNREFUSED, Situation::any,
                         "The new server bound at once, yet connect() was refused while no socket listened."},
                        {kOk, Situation::any,
                         "No request was lost: the gap fell between two requests of every client."},
                    },
                .run = strategy_step<Strategy::stop_start_reuseaddr>,
            },
            Step{
                .id = "reuseport-overlap",
                .preview = "The new server joins with SO_REUSEPORT and tells the old one to go; "
                           "tcp_migrate_req = 0.",
                .claim = "SO_REUSEPORT gives zero downtime: start the new server on the same port, then stop "
                         "the old one.",
                .source = "discussed in go-reuseport #6, Pingora #427, Envoy #8031 and #15818",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    losses("No connect() was refused: a listener was there all the time. But the kernel spreads new "
                           "connections over the group by a hash of their addresses, so about half went into the old "
                           "listener's queue after it had stopped accepting. Those connections are complete (connect() "
                           "returned), and when the old listener closed, the kernel reset them: recv() -> "
                           "ECONNRESET. Each socket of the group has its own queue.",
                           "No request was lost: none was queued on the old listener when it closed."),
                .run = strategy_step<Strategy::reuseport_overlap>,
            },
            Step{
                .id = "reuseport-migrate",
                .preview = "The same overlap with net.ipv4.tcp_migrate_req = 1 (Linux 5.14).",
                .claim = "With tcp_migrate_req = 1 the overlap loses nothing: a closing listener's queued "
                         "connections move to another listener of the group.",
                .source = "ip-sysctl.rst (tcp_migrate_req); issue 12's list",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    losses("Connections were reset although tcp_migrate_req = 1: some could not move to the new "
                           "listener.",
                           "Every request was served. The old listener's queue still held connections when it "
                           "closed, but with tcp_migrate_req = 1 the kernel moved them (and half-open ones) to the "
                           "new listener of the same SO_REUSEPORT group, which accepted them. They waited, as long "
                           "as the old server's drain, and were not lost."),
                .run = strategy_step<Strategy::reuseport_migrate>,
            },
            Step{
                .id = "listen-fds-exec",
                .preview = "SIGHUP: the old server puts its listener at fd 3, sets LISTEN_FDS=1 and LISTEN_PID, "
                           "and execs the new program.",
                .claim = "Handing the listening descriptor to the new program, as socket activation does, "
                         "loses nothing.",
                .source = "sd_listen_fds(3), systemd.socket(5); issue 12's list",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::any,
                         "Every request was served. execve() replaces the program but keeps the process and its "
                         "descriptors without FD_CLOEXEC: the listening socket was never closed, so its queue kept "
                         "every connection that arrived while the new program started, and the new program "
                         "accepted them from fd 3."},
                    },
                .run = strategy_step<Strategy::listen_fds>,
            },
            Step{
                .id = "scm-rights-handover",
                .preview = "The new server asks for the listener (SIGUSR2); the old one sends it with "
                           "SCM_RIGHTS over a Unix socket pair, closes its copy and leaves.",
                .claim = "Handing the descriptor over loses nothing.",
                .source = "HAProxy's seamless reload (-x), tableflip; issue 12's list",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::any,
                         "Every request was served. SCM_RIGHTS gave the new process another descriptor for the "
                         "same listening socket: when the old server closed its copy, the socket, its port and "
                         "its queue stayed, held by the new process."},
                    },
                .run = strategy_step<Strategy::scm_rights>,
            },
            Step{
                .id = "heavier-load",
                .preview = "Every strategy again with 2,000 requests each, in one table.",
                .claim = "The handovers (tcp_migrate_req = 1, LISTEN_FDS, SCM_RIGHTS) lose nothing under a "
                         "heavier load either.",
                .source = "issue 12: 2,000 requests",
                .claimed = kOk,
                .said = Said::reference,
                .explanations = losses("A handover strategy lost a request to a reset: see the table.",
                                       "None of the three handovers lost a request. The others lose "
                                       "what arrives during the restart, not a share of the load: only "
                                       "stop-start, whose new server never listens, loses more with more "
                                       "requests."),
                .run = heavier_load,
                .long_running = true,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == kInheritedFlag) return serve_inherited_listener();
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
