#include "portreuse/lab.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/wire.hpp"

namespace portreuse::lab {
namespace {

using Clock = std::chrono::steady_clock;

Millis left_until(Clock::time_point until) {
  const auto left = std::chrono::duration_cast<Millis>(until - Clock::now());
  return left.count() > 0 ? left : Millis(0);
}

// Control characters from a peer or a user never reach the terminal raw.
std::string printable(std::string_view text) {
  std::string shown;
  for (const char character : text) {
    const auto byte = static_cast<unsigned char>(character);
    if (byte == '\n') {
      shown += "\\n";
    } else if (byte < 0x20 || byte == 0x7f) {
      std::array<char, 8> escaped{};
      std::snprintf(escaped.data(), escaped.size(), "\\x%02x", byte);
      shown += escaped.data();
    } else {
      shown += character;
    }
  }
  return shown;
}

std::string seconds_text(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f", seconds);
  return text.data();
}

// The wire format of one event from a child: a fixed header and two strings, written with one
// write() of at most PIPE_BUF bytes, so events of several processes never interleave.
struct WireHeader {
  std::int32_t pid;
  std::int32_t origin;
  std::int32_t role;
  std::int32_t call;
  std::int64_t value;
  std::int32_t error;
  std::uint16_t actor_length;
  std::uint16_t detail_length;
  std::int32_t quiet;
  std::int32_t family;
  std::int64_t at;
};
constexpr std::size_t kMaxWire = 4096;  // PIPE_BUF on Linux

void set_timeouts(int fd) {
  const auto deadline = std::chrono::duration_cast<std::chrono::microseconds>(kDefaultDeadline);
  timeval limit{};
  limit.tv_sec = static_cast<time_t>(deadline.count() / 1000000);
  limit.tv_usec = static_cast<suseconds_t>(deadline.count() % 1000000);
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
}

// "server 4242" for a child's events; the name alone for this process's actors.
std::string shown_actor(const Event& event) {
  if (event.pid == 0 || event.pid == ::getpid()) return event.actor;
  const auto pid = std::to_string(event.pid);
  if (event.actor.size() > pid.size() && event.actor.compare(event.actor.size() - pid.size(), pid.size(), pid) == 0) {
    return event.actor;
  }
  return event.actor + " " + pid;
}

// Whether `pid` is this process or one of its descendants: the run's own sockets belong to one of
// them. Followed through /proc/PID/stat's parent field (a process that vanished meanwhile is not
// counted as ours).
bool in_this_run(pid_t pid) {
  const pid_t self = ::getpid();
  for (int hops = 0; pid > 1 && hops < 64; ++hops) {
    if (pid == self) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto after_name = text.rfind(')');  // the command name may itself hold spaces or ')'
    if (after_name == std::string::npos) return false;
    std::istringstream fields(text.substr(after_name + 1));
    std::string state;
    long parent = 0;
    if (!(fields >> state >> parent)) return false;
    pid = static_cast<pid_t>(parent);
  }
  return pid == self;
}

// The names in a directory of /proc; none when it cannot be read (the process has ended).
std::vector<std::string> names_in(const std::string& directory) {
  std::vector<std::string> names;
  DIR* listing = ::opendir(directory.c_str());
  if (listing == nullptr) return names;
  while (const dirent* entry = ::readdir(listing)) {
    if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
  }
  ::closedir(listing);
  return names;
}

// The socket inodes open in this process and its descendants (through /proc/PID/task/*/children):
// a few directories to read, where find_socket_owner() walks every process of the machine.
std::set<unsigned long> inodes_of_this_run() {
  std::set<unsigned long> inodes;
  std::vector<pid_t> pending{::getpid()};
  constexpr std::string_view kPrefix = "socket:[";
  while (!pending.empty() && pending.size() < 4096) {
    const auto process = "/proc/" + std::to_string(pending.back());
    pending.pop_back();
    for (const auto& fd : names_in(process + "/fd")) {
      std::array<char, 64> target{};
      const auto length = ::readlink((process + "/fd/" + fd).c_str(), target.data(), target.size() - 1);
      const std::string_view link(target.data(), length > 0 ? static_cast<std::size_t>(length) : 0);
      if (link.starts_with(kPrefix)) inodes.insert(std::stoul(std::string(link.substr(kPrefix.size()))));
    }
    for (const auto& task : names_in(process + "/task")) {
      std::ifstream children(process + "/task/" + task + "/children");
      long child = 0;
      while (children >> child) pending.push_back(static_cast<pid_t>(child));
    }
  }
  return inodes;
}

// " (another program's: pid N comm)" for a socket whose owner is known and is not of this run;
// empty otherwise (TIME_WAIT sockets have no owner, and /proc may not tell us another user's).
std::string foreign_owner_mark(const SocketEntry& entry, const std::set<unsigned long>& ours) {
  if (entry.inode == 0 || ours.contains(entry.inode)) return {};
  const auto owner = find_socket_owner(entry.inode);
  if (!owner || in_this_run(owner->pid)) return {};
  return " (another program's: pid " + std::to_string(owner->pid) + " " + owner->command + ")";
}

}  // namespace

std::int64_t Returned::now_ns() noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

std::string_view call_name(Call call) {
  switch (call) {
    case Call::socket: return "socket";
    case Call::setsockopt: return "setsockopt";
    case Call::getsockopt: return "getsockopt";
    case Call::bind: return "bind";
    case Call::listen: return "listen";
    case Call::connect: return "connect";
    case Call::accept: return "accept";
    case Call::recv: return "recv";
    case Call::send: return "send";
    case Call::shutdown: return "shutdown";
    case Call::close: return "close";
    case Call::fork: return "fork";
    case Call::kill: return "kill";
    case Call::sendto: return "sendto";
    case Call::recvfrom: return "recvfrom";
    case Call::getsockname: return "getsockname";
    case Call::unshare: return "unshare";
    case Call::sysctl: return "sysctl";
    case Call::pipe: return "pipe";
    case Call::exited: return "exited";
    case Call::note: return "note";
    case Call::setgroups: return "setgroups";
    case Call::setgid: return "setgid";
    case Call::setuid: return "setuid";
    case Call::write: return "write";
    case Call::ioctl: return "ioctl";
    case Call::socket_table: return "socket_table";
    case Call::timer: return "timer";
    case Call::socketpair: return "socketpair";
    case Call::sendmsg: return "sendmsg";
    case Call::recvmsg: return "recvmsg";
    case Call::execve: return "execve";
    case Call::dup2: return "dup2";
    case Call::waitpid: return "waitpid";
    case Call::signalfd: return "signalfd";
    case Call::fcntl: return "fcntl";
  }
  return "?";
}

std::string Event::text() const {
  if (call == Call::note) return printable(detail);
  if (call == Call::exited) return printable(detail);
  if ((call == Call::socket_table || call == Call::timer) && error == 0) return printable(detail);
  std::string shown(call_name(call));
  if (!detail.empty()) shown += " " + printable(detail);
  if (error != 0) return shown + " -> " + describe_outcome(make_error(error));
  if (call == Call::recv && value == 0) return shown + " -> 0 (end of stream)";
  if (call == Call::socket || call == Call::accept) return shown + " -> fd " + std::to_string(value);
  if (call == Call::fork) return shown + " -> child " + std::to_string(value);
  if (call == Call::recv || call == Call::send || call == Call::sendto || call == Call::recvfrom) {
    return shown + " -> " + std::to_string(value) + " bytes";
  }
  return shown + " -> ok";
}

// ---- Trace -------------------------------------------------------------------------------

int Trace::record_call(CallName name, Returned returned, std::string_view detail, int family) {
  Event event;
  event.call = name.call;
  event.value = returned.value;
  event.error = returned.error;
  event.detail = std::string(detail);
  event.family = family;
  // The narration's order: a call that waits for another process (recv, accept) is placed when
  // it returned; any other call when it began, right after this process's previous call (or the
  // lab's last report) returned. So a send comes before the recv that got its bytes, even when
  // the receiver returned first.
  const bool waits = name.call == Call::recv || name.call == Call::recvfrom || name.call == Call::accept ||
                     name.call == Call::recvmsg || name.call == Call::waitpid;
  std::int64_t& previous = lab_ != nullptr ? lab_->last_at_ : last_at_;  // per process, not per actor
  const std::int64_t began = previous != 0 ? previous : returned.at;
  event.at = waits ? returned.at : began;
  previous = returned.at;
  if (name.call == Call::fork && lab_ == nullptr && returned.value > 0) {
    return static_cast<int>(returned.value);  // the child reports this fork, before its own calls
  }
  if (name.call == Call::fork && returned.value == 0) {
    // This is the new process. In a spawned process it reports its parent's fork() first, so the
    // narration shows the fork before anything the child does; from here on it speaks for itself.
    if (lab_ == nullptr) {
      event.at = began;  // the parent's fork began there; the child may run much later
      event.pid = ::getppid();
      event.value = ::getpid();
      record(std::move(event));
    }
    actor_ += "'s child";
    return 0;
  }
  if ((name.call == Call::socket || name.call == Call::accept) && returned.value >= 0) {
    set_timeouts(static_cast<int>(returned.value));
    if (lab_ != nullptr) lab_->own_descriptor(static_cast<int>(returned.value));
  }
  record(std::move(event));
  return static_cast<int>(returned.value);
}

int Trace::required(int value, const Returned& returned) {
  if (returned.value < 0) {
    if (lab_ != nullptr) lab_->broken_at_ = lab_->events_.size() - 1;  // the event just recorded
    throw ScenarioBroke{"a call the scenario needs failed"};
  }
  return value;
}

void Trace::note(std::string_view text) {
  Event event;
  event.call = Call::note;
  event.detail = std::string(text);
  record(std::move(event));
}

int Trace::send_text(int fd, std::string_view text) {
  const Returned returned = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  return call("send", returned, "\"" + std::string(text) + "\"");
}

std::string Trace::receive_text(int fd) {
  std::array<char, 512> buffer{};
  const Returned returned = ::recv(fd, buffer.data(), buffer.size(), 0);
  std::string got =
      returned.value > 0 ? std::string(buffer.data(), static_cast<std::size_t>(returned.value)) : std::string();
  call("recv", returned, got.empty() ? std::string() : "\"" + got + "\"");
  return got;
}

std::string Trace::must_receive_text(int fd) {
  std::array<char, 512> buffer{};
  const Returned returned = ::recv(fd, buffer.data(), buffer.size(), 0);
  if (returned.value > 0) {
    std::string got(buffer.data(), static_cast<std::size_t>(returned.value));
    call("recv", returned, "\"" + got + "\"");
    return got;
  }
  if (returned.value < 0) must("recv", returned);  // records the failure and throws
  call("recv", returned);                          // 0: the peer ended the stream, saying nothing
  throw ScenarioBroke{"the peer's message never came: the stream ended first"};
}

void Trace::wait_for_signal() {
  note("waits until a signal stops it (Ctrl+C is SIGINT)");
  for (;;) ::pause();  // the child's lifetime alarm ends it at the latest
}

Trace Trace::alongside(std::string actor, Role role) const {
  Trace other(lab_, pipe_fd_, std::move(actor), role);
  other.origin_ = origin_;
  return other;
}

void Trace::record_row(Call call, long value, int error, std::string detail, int family) {
  Event event;
  event.call = call;
  event.value = value;
  event.error = error;
  event.detail = std::move(detail);
  event.family = family;
  record(std::move(event));
}

void Trace::report_sockets(std::uint16_t port, Transport transport) {
  const auto table = read_socket_table(transport);
  if (!table) return record_row(Call::socket_table, -1, table.error().value(), "of this network namespace");
  for (const auto& entry : involving_port(*table, port)) {
    record_row(Call::socket_table, static_cast<long>(entry.state), 0, entry.describe(), entry.local.family());
  }
}

void Trace::report_timers(std::uint16_t port) {
  const auto table = read_socket_table(Transport::tcp);
  if (!table) return record_row(Call::timer, -1, table.error().value(), "of this network namespace");
  for (const auto& entry : involving_port(*table, port)) {
    if (!entry.is(TcpState::time_wait)) continue;
    record_row(Call::timer, std::lround(entry.timer_seconds * 1000.0), 0, entry.describe(), entry.local.family());
  }
}

void Trace::record(Event event) {
  if (silent_ || (quiet_ && event.error == 0 && event.value >= 0)) event.quiet = true;
  if (event.pid == 0) event.pid = ::getpid();
  if (event.at == 0) event.at = Returned::now_ns();
  event.role = role_;
  event.actor = actor_;
  if (lab_ != nullptr) {
    lab_->record(std::move(event));
    return;
  }
  // In a child: one write() per event.
  const std::string actor = event.actor.substr(0, 64);
  const std::string detail = event.detail.substr(0, kMaxWire - sizeof(WireHeader) - actor.size());
  WireHeader header{};
  header.pid = event.pid;
  header.origin = origin_;
  header.role = static_cast<std::int32_t>(event.role);
  header.call = static_cast<std::int32_t>(event.call);
  header.value = event.value;
  header.error = event.error;
  header.actor_length = static_cast<std::uint16_t>(actor.size());
  header.detail_length = static_cast<std::uint16_t>(detail.size());
  header.quiet = event.quiet ? 1 : 0;
  header.family = event.family;
  header.at = event.at;
  std::string wire(reinterpret_cast<const char*>(&header), sizeof header);
  wire += actor;
  wire += detail;
  (void)!::write(pipe_fd_, wire.data(), wire.size());
}

namespace {
constexpr const char* kTraceVariable = "PORTREUSE_TRACE";  // "fd origin role actor"
}  // namespace

std::optional<std::string> Trace::keep_across_exec() {
  // F_DUPFD gives a copy without FD_CLOEXEC, above the descriptors a server hands on (3, 4...).
  const Returned kept = ::fcntl(pipe_fd_, F_DUPFD, 10);
  if (kept.value < 0) {
    call("fcntl", kept, "F_DUPFD 10: the report channel, to be kept across execve");
    return std::nullopt;
  }
  pipe_fd_ = static_cast<int>(kept.value);
  return std::string(kTraceVariable) + "=" + std::to_string(pipe_fd_) + " " + std::to_string(origin_) + " " +
         std::to_string(static_cast<int>(role_)) + " " + actor_;
}

std::optional<Trace> Trace::resume_after_exec() {
  const char* entry = std::getenv(kTraceVariable);
  if (entry == nullptr) return std::nullopt;
  int fd = -1;
  int origin = 0;
  int role = 0;
  int used = 0;
  if (std::sscanf(entry, "%d %d %d %n", &fd, &origin, &role, &used) != 3 || fd < 0 || ::fcntl(fd, F_GETFD) < 0 ||
      role < 0 || role > static_cast<int>(Role::other)) {
    return std::nullopt;
  }
  Trace resumed(nullptr, fd, std::string(entry + used), static_cast<Role>(role));
  resumed.origin_ = origin;
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // not handed on any further
  ::unsetenv(kTraceVariable);
  return resumed;
}

// ---- Process -----------------------------------------------------------------------------

std::optional<Event> Process::wait_for(CallName call, Millis deadline) {
  const auto until = Clock::now() + deadline;
  const auto find = [&]() -> std::optional<Event> {
    for (; cursor_ < lab_->events_.size(); ++cursor_) {
      const auto& event = lab_->events_[cursor_];
      if (event.origin == origin_ && event.call == call.call) return lab_->events_[cursor_++];
    }
    return std::nullopt;
  };
  for (;;) {
    lab_->pump(Millis(0));
    if (auto found = find()) return found;
    if (Clock::now() >= until) return std::nullopt;
    if (!child_.running() || child_.wait_for_exit(Millis(0))) {
      lab_->pump(Millis(0));  // what it wrote before it ended
      return find();
    }
    lab_->pump(std::min(left_until(until), Millis(20)));
  }
}

Event Process::must_reach(CallName call, Millis deadline) {
  auto event = wait_for(call, deadline);
  if (!event) {
    // What stopped the child is its own last failed call, not an earlier failure elsewhere.
    for (auto index = lab_->events_.size(); index > 0; --index) {
      const auto& reported = lab_->events_[index - 1];
      if (reported.origin != origin_ || reported.ok() || reported.call == Call::note || reported.call == Call::exited) {
        continue;
      }
      lab_->broken_at_ = index - 1;
      break;
    }
    throw ScenarioBroke{actor_ + " never reported " + std::string(call_name(call.call))};
  }
  if (!event->ok()) {
    lab_->broken_at_ = cursor_ - 1;  // wait_for stepped past the event it returned
    throw ScenarioBroke{"a call the scenario needs failed"};
  }
  return *event;
}

std::optional<ExitStatus> Process::reap(Millis deadline) {
  const auto status = child_.wait_for_exit(deadline);
  lab_->pump(Millis(0));
  if (!status) return status;
  lab_->running_.erase(child_.pid());
  Event event;
  event.pid = child_.pid();
  event.origin = origin_;
  event.role = role_;
  event.actor = actor_;
  event.call = Call::exited;
  event.value = status->exited ? status->code : -status->signal;
  event.detail = status->describe();
  lab_->record(std::move(event));
  if (role_ == Role::server && !status->exited) lab_->seen_.insert(Evidence::server_stopped);
  return status;
}

// ---- Lab ---------------------------------------------------------------------------------

Lab::Lab(const Narrator& narrator, std::uint16_t port, bool json, bool step_mode)
    : narrator_(narrator), port_(port), json_(json), step_mode_(step_mode) {
  std::array<int, 2> ends{};
  if (::pipe2(ends.data(), O_CLOEXEC) == 0) {
    pipe_read_.reset(ends[0]);
    pipe_write_.reset(ends[1]);
  } else {
    pipe_error_ = errno;
  }
}

Lab::~Lab() {
  // A descriptor the step closed itself is gone already (EBADF); one that a later socket() got
  // again is the step's too.
  for (const int fd : owned_) ::close(fd);
}

Endpoint Lab::address(std::string_view ip) const {
  return Endpoint::parse(ip, port_).value_or(Endpoint{});
}

Trace Lab::actor(std::string name, Role role) {
  return Trace(this, -1, std::move(name), role);
}

Process Lab::spawn(std::string name, Role role, const std::function<void(Trace&)>& body, Millis lifetime) {
  const int origin = next_origin_++;
  if (!pipe_write_) {
    record_failure(Call::pipe, pipe_error_, "for the reports of " + name);
    throw ScenarioBroke{"could not start " + name};
  }
  const int write_fd = pipe_write_.get();
  const auto lifetime_seconds = static_cast<unsigned>(std::max<long long>(1, lifetime.count() / 1000));
  auto child = ChildProcess::fork_running([&]() -> int {
    ::alarm(lifetime_seconds);  // nothing outlives the step, whatever the body does
    pipe_read_.reset();
    Trace trace(nullptr, write_fd, name, role);
    trace.origin_ = origin;
    try {
      body(trace);
      return 0;
    } catch (const ScenarioBroke&) {
      return 1;  // the failed call is already reported
    }
  });
  if (!child) {
    record_failure(Call::fork, child.error().value(), "to start " + name);
    throw ScenarioBroke{"could not start " + name};
  }
  const std::string actor = name + " " + std::to_string(child->pid());
  running_.insert(child->pid());
  Process process(this, std::move(child.value()), actor, role, origin);
  process.cursor_ = events_.size();
  return process;
}

void Lab::record_failure(Call call, int error, std::string detail) {
  Event event;
  event.pid = ::getpid();
  event.actor = "lab";
  event.call = call;
  event.value = -1;
  event.error = error;
  event.detail = std::move(detail);
  record(std::move(event));
  broken_at_ = events_.size() - 1;  // the step cannot go on after this failure
}

void Lab::you(std::string_view text) {
  pump(Millis(0));
  narrator_.line("you", text);
  last_at_ = Returned::now_ns();
}

void Lab::pause(std::string_view what_to_look_at) {
  if (!step_mode_ || json_) return;
  pump(Millis(0));
  narrator_.pause(what_to_look_at);
  last_at_ = Returned::now_ns();
}

void Lab::record(Event event) {
  if (event.at == 0) event.at = Returned::now_ns();
  // What the children did before this call returned comes first, what they did since after it.
  // A call that another process completes (a recv, an accept, a connect) waits a moment for that
  // process's report, which is written just after its own call returns.
  // With no child running there is no report to wait for (09's 200 connections in one process).
  const bool completed_by_peer =
      (event.call == Call::recv || event.call == Call::accept || event.call == Call::connect) && !running_.empty();
  std::vector<Event> batch;
  auto wait = completed_by_peer ? Millis(5) : Millis(0);
  while (auto child_event = read_one(wait)) {
    batch.push_back(std::move(*child_event));
    wait = completed_by_peer ? Millis(3) : Millis(0);
  }
  batch.push_back(std::move(event));
  remember_in_order(std::move(batch));
  last_at_ = Returned::now_ns();  // this process's next call begins after this
}

void Lab::remember_in_order(std::vector<Event> batch) {
  std::stable_sort(batch.begin(), batch.end(),
                   [](const Event& left, const Event& right) { return left.at < right.at; });
  for (auto& event : batch) remember(std::move(event));
}

void Lab::remember(Event event) {
  ipv6_rows_needed_ = ipv6_rows_needed_ || event.error != 0 || event.family == AF_INET6;
  if (event.ok()) {
    if (event.call == Call::listen) seen_.insert(Evidence::listening);
    if (event.call == Call::accept) seen_.insert(Evidence::accepted);
    if (event.call == Call::fork && event.value > 0) seen_.insert(Evidence::forked);
    if (event.call == Call::socket_table) {
      seen_.insert(Evidence::table_read);
      if (event.value == static_cast<long>(TcpState::time_wait)) seen_.insert(Evidence::time_wait_seen);
    }
    if (event.call == Call::recv && event.value > 0) {
      server_heard_ = server_heard_ || event.role == Role::server;
      client_heard_ = client_heard_ || event.role == Role::client;
      if (server_heard_ && client_heard_) seen_.insert(Evidence::exchanged);
    }
    if (event.call == Call::recv && event.value == 0) {
      if (event.role == Role::client) seen_.insert(Evidence::server_closed_first);
      if (event.role == Role::server) seen_.insert(Evidence::client_closed_first);
    }
  }
  if (!json_ && !event.quiet) {
    const std::string actor = shown_actor(event);
    const Tone tone = event.call == Call::note || event.call == Call::exited ? Tone::plain
                      : event.error != 0                                     ? Tone::bad
                                                                             : Tone::plain;
    narrator_.line(actor, narrator_.paint(event.text(), tone));
  }
  events_.push_back(std::move(event));
}

std::optional<Event> Lab::read_one(Millis deadline) {
  const auto until = Clock::now() + deadline;
  for (;;) {
    if (buffered_.size() >= sizeof(WireHeader)) {
      WireHeader header{};
      std::memcpy(&header, buffered_.data(), sizeof header);
      const std::size_t total = sizeof header + header.actor_length + header.detail_length;
      if (buffered_.size() >= total) {
        Event event;
        event.pid = header.pid;
        event.origin = header.origin;
        event.role = static_cast<Role>(header.role);
        event.call = static_cast<Call>(header.call);
        event.value = static_cast<long>(header.value);
        event.error = header.error;
        event.quiet = header.quiet != 0;
        event.at = header.at;
        event.family = header.family;
        event.actor = buffered_.substr(sizeof header, header.actor_length);
        event.detail = buffered_.substr(sizeof header + header.actor_length, header.detail_length);
        buffered_.erase(0, total);
        return event;
      }
    }
    if (!pipe_read_) return std::nullopt;
    if (wait_readable(pipe_read_.get(), left_until(until))) return std::nullopt;
    std::array<char, kMaxWire> chunk{};
    const auto got = ::read(pipe_read_.get(), chunk.data(), chunk.size());
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    buffered_.append(chunk.data(), static_cast<std::size_t>(got));
  }
}

void Lab::pump(Millis deadline) {
  auto wait = deadline;
  std::vector<Event> batch;
  while (auto event = read_one(wait)) {
    batch.push_back(std::move(*event));
    wait = Millis(0);
  }
  remember_in_order(std::move(batch));
  last_at_ = Returned::now_ns();
}

void Lab::own_descriptor(int fd) {
  owned_.insert(fd);
}

Result<std::uint16_t> Lab::fresh_port() const {
  auto port = free_tcp_port();
  if (port && wire_) wire_->ports.insert(*port);  // the step's port too: its segments are in the ladder
  return port;
}

Observation Lab::skip(CallName call, std::string why) {
  Observation observation;
  observation.call = call.call;
  observation.skipped = std::move(why);
  return observation;
}

Situation Lab::show_sockets(std::string_view caption, Transport transport) {
  return show_sockets(caption, port_, transport);
}

const std::vector<SocketEntry>* Lab::shown_sockets() const noexcept {
  return last_table_read_ ? &last_table_ : nullptr;
}

std::string Lab::shown_sockets_json() const {
  if (!last_table_read_) return "null";
  std::vector<std::string> rows;
  rows.reserve(last_table_.size());
  for (const auto& entry : last_table_) rows.push_back(entry.describe());
  return json_string_array(rows);
}

Situation Lab::show_sockets(std::string_view caption, std::uint16_t port, Transport transport) {
  pump(Millis(0));
  if (wire_) wire_->ports.insert(port);  // a port the step looks at is one of its ports
  // Let passing states (FIN_WAIT_1, LAST_ACK) settle, so what is shown is where the kernel stays.
  const auto until = Clock::now() + Millis(500);
  const auto ipv6 = ipv6_rows_needed_ ? Ipv6Rows::all : Ipv6Rows::listeners;
  Result<std::vector<SocketEntry>> table = read_socket_table(transport, TableSource::automatic, ipv6);
  while (table && Clock::now() < until) {
    bool closing = false;
    for (const auto& entry : involving_port(*table, port)) {
      closing = closing || entry.is(TcpState::fin_wait1) || entry.is(TcpState::closing) ||
                entry.is(TcpState::last_ack) || entry.is(TcpState::syn_sent) || entry.is(TcpState::syn_recv);
    }
    if (!closing) break;
    std::this_thread::sleep_for(Millis(1));
    table = read_socket_table(transport, TableSource::automatic, ipv6);
  }
  if (!table) {
    narrator_.line("kernel", "cannot read the socket table (" + describe_outcome(table.error()) +
                                 "): nothing about the port's sockets was observed");
    last_table_.clear();
    last_table_read_ = false;
    return Situation::unobserved;
  }
  show_segments();  // what went over the wire to bring the sockets where the table shows them
  seen_.insert(Evidence::table_read);
  last_table_read_ = true;
  last_table_ = involving_port(*table, port);
  std::vector<std::string> rows;
  rows.reserve(last_table_.size());
  bool listener = false;
  bool connection = false;
  bool time_wait = false;
  bool bound = false;
  const auto ours = inodes_of_this_run();
  for (const auto& entry : last_table_) {
    rows.push_back(entry.describe() + foreign_owner_mark(entry, ours));
    if (entry.local.port() != port) continue;
    if (entry.is(TcpState::listen)) {
      listener = true;
    } else if (entry.is(TcpState::time_wait)) {
      time_wait = true;
    } else if (entry.is(TcpState::close)) {
      bound = true;
    } else {
      connection = true;
    }
  }
  for (const auto& entry : last_table_) {
    if (entry.is(TcpState::time_wait)) seen_.insert(Evidence::time_wait_seen);
  }
  narrator_.table("kernel", caption, rows);
  last_at_ = Returned::now_ns();
  if (listener) return Situation::listener;
  if (connection) return Situation::connection;
  if (time_wait) return Situation::time_wait;
  if (bound) return Situation::bound_only;
  return Situation::clean;
}

void Lab::report_time_waits(Observation& observation) {
  const SocketEntry* longest = nullptr;
  std::string side = "none";
  for (const auto& entry : last_table_) {
    if (!entry.is(TcpState::time_wait)) continue;
    const bool servers = entry.local.port() == port_;
    const auto held = std::to_string(entry.local.port());
    narrator_.line("kernel", std::string("the TIME_WAIT is the ") + (servers ? "server" : "client") + "'s: it keeps " +
                                 (servers ? "port " + held + " itself"
                                          : "ephemeral port " + held + ", not " + std::to_string(port_)) +
                                 "; " + seconds_text(entry.timer_seconds) + " s left on its timer");
    if (longest == nullptr || entry.timer_seconds > longest->timer_seconds) {
      longest = &entry;
      side = servers ? "server" : "client";
    }
  }
  if (longest == nullptr) narrator_.line("kernel", "no TIME_WAIT socket for port " + std::to_string(port_));
  observation.fact("time_wait_side", json_quote(side));
  observation.fact("time_wait_seconds_left", longest ? seconds_text(longest->timer_seconds) : "null");
  observation.fact("time_wait_holds_port", longest ? std::to_string(longest->local.port()) : "null");
}

int Lab::time_waits_shown(Role side) const {
  int count = 0;
  for (const auto& entry : last_table_) {
    if (!entry.is(TcpState::time_wait)) continue;
    const bool servers = entry.local.port() == port_;
    if ((side == Role::server && servers) || (side == Role::client && !servers)) ++count;
  }
  return count;
}

void Lab::record_wire(wire::Wire& wire) {
  wire_ = std::make_unique<wire::StepWire>();
  wire_->wire = &wire;
  wire_->ports.insert(port_);
}

bool Lab::shares_private_network() const noexcept {
  return wire_ && wire_->wire->capturing();
}

void Lab::show_segments() {
  if (!wire_ || !wire_->wire->capturing()) return;
  pump(Millis(0));
  unsigned dropped = 0;
  const auto segments = wire_->wire->drain(wire_->ports, dropped);
  auto rows = wire_->ladder.rows(segments, wire_->ports);
  if (!wire_->wire->ladder() || (rows.empty() && dropped == 0)) return;
  // A step with many connections shows its first segments only; the pcap file has them all.
  constexpr std::size_t kMostRows = 40;
  if (rows.size() > kMostRows) {
    const auto more = rows.size() - kMostRows + 1;
    rows.resize(kMostRows - 1);
    rows.push_back("(" + std::to_string(more) + " more rows not shown)");
  }
  if (dropped > 0) {
    rows.push_back("(" + std::to_string(dropped) + " frames lost: the capture buffer was full)");
  }
  // The narrator puts a row under the text when it fits there (60 columns), else further left:
  // when one row is too wide, equal widths keep the ladder's rows together.
  constexpr std::size_t kUnderText = 60;
  std::size_t widest = 0;
  for (const auto& row : rows) widest = std::max(widest, row.size());
  if (widest > kUnderText) {
    for (auto& row : rows) row.resize(widest, ' ');
  }
  narrator_.table("wire", wire_->shown ? "the segments since then:" : "the segments on lo (AF_PACKET capture):", rows);
  wire_->shown = true;
}

void Lab::report_segments(Observation& observation) {
  if (!wire_) return;
  if (const auto& missing = wire_->wire->missing()) {
    narrator_.line("wire", "no ladder: " + *missing);
    observation.fact("segments", "null");
    observation.fact("ladder_missing", json_quote(*missing));
    return;
  }
  show_segments();
  observation.fact("segments", json_string_array(wire_->ladder.flags()));
  if (const auto& problem = wire_->wire->pcap_problem()) {
    narrator_.line("wire", *problem);
    observation.fact("pcap_problem", json_quote(*problem));
  }
}

std::string Lab::mermaid_diagram() const {
  if (!wire_ || !wire_->wire->capturing()) return {};
  return wire_->ladder.mermaid();
}

bool Lab::saw(Evidence evidence) const {
  return seen_.count(evidence) > 0;
}

const Event* Lab::last(Call call, Role role) const {
  for (auto event = events_.rbegin(); event != events_.rend(); ++event) {
    if (event->call == call && event->role == role) return &*event;
  }
  return nullptr;
}

std::string Lab::events_json() const {
  std::vector<std::string> texts;
  texts.reserve(events_.size());
  for (const auto& event : events_) {
    if (event.quiet) continue;
    texts.push_back(shown_actor(event) + ": " + event.text());
  }
  return json_string_array(texts);
}

Observation Lab::could_not_run(std::string_view what_was_missing) {
  pump(Millis(0));
  Observation observation;
  // The calls the step made are the evidence for what stopped it.
  observation.fact("calls", events_json());
  // The failure a must() stopped the step on, when there is one; else the first failure: an
  // earlier failure can be an outcome the scenario expected (a refused connect), not the cause.
  std::vector<const Event*> failures;
  if (broken_at_ && *broken_at_ < events_.size()) failures.push_back(&events_[*broken_at_]);
  for (const auto& event : events_) failures.push_back(&event);
  for (const auto* failure : failures) {
    const auto& event = *failure;
    if (event.call == Call::note || event.call == Call::exited || event.ok()) continue;
    observation.call = event.call;
    observation.could_not_run = std::string(what_was_missing) + ": " + std::string(call_name(event.call)) +
                                (event.detail.empty() ? "" : " " + printable(event.detail)) + " (" + event.actor +
                                ") returned " + describe_outcome(make_error(event.error));
    return observation;
  }
  observation.could_not_run = std::string(what_was_missing) + " (no call failed, but it was not seen)";
  return observation;
}

Observation Lab::could_not_run(std::string_view what_was_missing, const Event& failed) {
  pump(Millis(0));
  Observation observation;
  // The failed call is listed even when a silent trace recorded it (17's clients): the why never
  // names a call that the calls do not show.
  std::vector<std::string> texts;
  for (const auto& event : events_) {
    const bool named = event.pid == failed.pid && event.at == failed.at && event.call == failed.call;
    if (event.quiet && !named) continue;
    texts.push_back(shown_actor(event) + ": " + event.text());
  }
  observation.fact("calls", json_string_array(texts));
  observation.call = failed.call;
  observation.could_not_run = std::string(what_was_missing) + ": " + std::string(call_name(failed.call)) +
                              (failed.detail.empty() ? "" : " " + printable(failed.detail)) + " (" + failed.actor +
                              ") returned " + describe_outcome(make_error(failed.error));
  return observation;
}

std::optional<double> Lab::time_wait_seconds_left() const {
  std::optional<double> longest;
  for (const auto& entry : last_table_) {
    if (!entry.is(TcpState::time_wait) || entry.local.port() != port_) continue;
    if (!longest || entry.timer_seconds > *longest) longest = entry.timer_seconds;
  }
  return longest;
}

Observation Lab::observe(const std::optional<Event>& answer, std::initializer_list<Evidence> needs,
                         Situation situation) {
  pump(Millis(0));
  for (const auto need : needs) {
    if (!saw(need))
      return could_not_run(std::string("the scenario did not happen: ") + std::string(evidence_words(need)));
  }
  if (!answer) return could_not_run("the call that answers the step was never made");
  Observation observation;
  observation.call = answer->call;
  observation.outcome = answer->error;
  observation.situation = situation;
  observation.fact("calls", events_json());
  return observation;
}

std::string_view evidence_words(Evidence evidence) {
  switch (evidence) {
    case Evidence::listening: return "no server was listening";
    case Evidence::accepted: return "no connection was accepted";
    case Evidence::server_closed_first: return "the client never read the server's end of stream";
    case Evidence::client_closed_first: return "the server never read the client's end of stream";
    case Evidence::server_stopped: return "the old server was not seen to end by the signal";
    case Evidence::forked: return "no child process took the connection";
    case Evidence::table_read: return "the socket table could not be read";
    case Evidence::time_wait_seen: return "no TIME_WAIT was seen";
    case Evidence::exchanged: return "the server and the client did not both receive the other's message";
  }
  return "?";
}

std::string_view situation_key(Situation situation) {
  switch (situation) {
    case Situation::any: return "";
    case Situation::unobserved: return "unobserved";
    case Situation::clean: return "clean";
    case Situation::listener: return "listener";
    case Situation::connection: return "connection";
    case Situation::time_wait: return "time-wait";
    case Situation::bound_only: return "bound-only";
    case Situation::each_reached_its_own: return "each-reached-its-own";
    case Situation::most_specific_wins: return "most-specific-wins";
    case Situation::other_delivery: return "other-delivery";
    case Situation::first_listening: return "first-listening";
    case Situation::second_bind_refused: return "second-bind-refused";
    case Situation::tuple_taken: return "tuple-taken";
    case Situation::tuple_free: return "tuple-free";
    case Situation::dual_stack: return "dual-stack";
    case Situation::v6_only: return "v6-only";
    case Situation::client_time_wait: return "time-wait-on-client";
    case Situation::shared: return "shared";
    case Situation::nothing_delivered: return "nothing-delivered";
    case Situation::partly_delivered: return "partly-delivered";
    case Situation::all_delivered: return "all-delivered";
    case Situation::all_to_first: return "all-to-first";
    case Situation::all_to_second: return "all-to-second";
    case Situation::none_arrived: return "none-arrived";
    case Situation::all_in_time_wait: return "all-in-time-wait";
    case Situation::reused_time_wait_port: return "reused-time-wait-port";
    case Situation::new_port: return "new-port";
    case Situation::never_exhausted: return "never-exhausted";
    case Situation::timer_within_a_minute: return "timer-within-a-minute";
    case Situation::timer_beyond_a_minute: return "timer-beyond-a-minute";
    case Situation::under_a_minute: return "under-a-minute";
    case Situation::about_a_minute: return "about-a-minute";
    case Situation::over_a_minute: return "over-a-minute";
    case Situation::never_held: return "never-held";
    case Situation::still_held: return "still-held";
    case Situation::cells_as_documented: return "cells-as-documented";
    case Situation::cells_differ: return "cells-differ";
    case Situation::cells_skipped: return "cells-skipped";
    case Situation::ran_out_sooner: return "ran-out-sooner";
    case Situation::inside_own_range: return "inside-own-range";
    case Situation::only_reuseport: return "only-reuseport";
    case Situation::time_wait_reopened: return "time-wait-reopened";
    case Situation::time_wait_ended: return "time-wait-ended";
    case Situation::time_wait_kept: return "time-wait-kept";
    case Situation::timer_restarted: return "timer-restarted";
    case Situation::timer_not_restarted: return "timer-not-restarted";
    case Situation::new_server_not_listening: return "new-server-not-listening";
    case Situation::served_after_restart: return "served-after-restart";
  }
  return "?";
}

Observation& Observation::fact_text(std::string key, std::string_view text) {
  return fact(std::move(key), json_quote(text));
}

std::optional<std::string> Observation::fact(std::string_view key) const {
  for (const auto& [name, value] : facts) {
    if (name == key) return value;
  }
  return std::nullopt;
}

}  // namespace portreuse::lab
