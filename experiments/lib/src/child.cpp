#include "portreuse/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace portreuse {
namespace {

// Process groups of live children, for the signal handler. A plain array of atomics because a
// handler may only touch lock-free state; this is the one piece of global state the suite needs.
constexpr std::size_t kMaxChildren = 256;
std::array<std::atomic<pid_t>, kMaxChildren> live_groups{};

void remember_group(pid_t group) {
  for (auto& slot : live_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, group)) return;
  }
}

void forget_group(pid_t group) {
  for (auto& slot : live_groups) {
    pid_t expected = group;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

extern "C" void kill_children_and_reraise(int signal_number) {
  for (auto& slot : live_groups) {
    const pid_t group = slot.exchange(0);
    if (group <= 0) continue;
    ::kill(-group, SIGKILL);
    while (::waitpid(-group, nullptr, 0) > 0) {
    }
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

void reset_signals_for_child() {
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) ::signal(signal_number, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace

ExitStatus ExitStatus::from_wait_status(int status) {
  ExitStatus result;
  if (WIFEXITED(status)) {
    result.exited = true;
    result.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

std::string ExitStatus::describe() const {
  if (exited) return "exited with status " + std::to_string(code);
  return "ended by " + signal_name(signal);
}

std::string signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT: return "SIGINT";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGALRM: return "SIGALRM";
    default: return "signal " + std::to_string(signal_number);
  }
}

void install_interrupt_cleanup() {
#ifdef PR_SET_CHILD_SUBREAPER
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
  struct sigaction action {};
  action.sa_handler = kill_children_and_reraise;
  sigemptyset(&action.sa_mask);
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal_number, &action, nullptr);
  // A peer that vanishes must show up as EPIPE in the narration, not kill the experiment.
  ::signal(SIGPIPE, SIG_IGN);
}

Result<ChildProcess> ChildProcess::fork_running(const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return last_error();
  if (pid == 0) {
    ::setpgid(0, 0);
    reset_signals_for_child();
#ifdef PR_SET_PDEATHSIG
    // If the experiment itself is killed with SIGKILL, its servers must not outlive it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);
#else
    (void)parent;
#endif
    int code = 125;
    try {
      code = body();
    } catch (...) {
      code = 124;
    }
    ::_exit(code);
  }
  ::setpgid(pid, pid);  // also in the parent, so the group exists before either side goes on
  remember_group(pid);
  return ChildProcess(pid);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  kill_and_reap();
}

std::error_code ChildProcess::send_signal(int signal_number) const {
  if (pid_ <= 0 || status_) return make_error(ESRCH);
  if (::kill(pid_, signal_number) != 0) return last_error();
  return {};
}

std::optional<ExitStatus> ChildProcess::wait_for_exit(Millis deadline) {
  if (status_ || pid_ <= 0) return status_;
  const auto until = std::chrono::steady_clock::now() + deadline;
  // A pidfd becomes readable when the child ends: one blocking poll() instead of waking up again
  // and again, which on a loaded machine waits for a core at every wake-up (Linux 5.3 and later).
  UniqueFd pidfd;
#ifdef SYS_pidfd_open
  pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
#endif
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    int raw = 0;
    const pid_t done = ::waitpid(pid_, &raw, WNOHANG);
    if (done == pid_) {
      status_ = ExitStatus::from_wait_status(raw);
      return status_;
    }
    if (done < 0 && errno != EINTR) return std::nullopt;
    const auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (pidfd) {
      pollfd watched{pidfd.get(), POLLIN, 0};
      (void)::poll(&watched, 1, static_cast<int>(left.count()));
      continue;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

void ChildProcess::kill_and_reap() noexcept {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);  // the group: the child and anything it forked
  if (!status_) ::kill(pid_, SIGKILL);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    int raw = 0;
    const pid_t done = ::waitpid(-pid_, &raw, WNOHANG);
    if (done == pid_ && !status_) status_ = ExitStatus::from_wait_status(raw);
    if (done < 0 && errno == ECHILD) break;  // nothing of this group is left to reap
    if (done == 0) {
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  forget_group(pid_);
  pid_ = -1;
}

int exec_program(const std::vector<std::string>& argv) {
  if (argv.empty()) return 127;
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  const std::string why = "exec " + argv[0] + ": " + std::strerror(errno) + "\n";
  (void)!::write(STDERR_FILENO, why.data(), why.size());
  return 127;
}

Result<CommandResult> run_command(const std::vector<std::string>& argv, Millis deadline, const std::string& input) {
  std::array<int, 2> out_pipe{};
  std::array<int, 2> err_pipe{};
  std::array<int, 2> in_pipe{};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd out_read(out_pipe[0]);
  UniqueFd out_write(out_pipe[1]);
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);
  if (::pipe2(in_pipe.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd in_read(in_pipe[0]);
  UniqueFd in_write(in_pipe[1]);

  auto child = ChildProcess::fork_running([&]() -> int {
    ::dup2(in_read.get(), STDIN_FILENO);
    ::dup2(out_write.get(), STDOUT_FILENO);
    ::dup2(err_write.get(), STDERR_FILENO);
    return exec_program(argv);
  });
  if (!child) return child.error();
  in_read.reset();
  out_write.reset();
  err_write.reset();
  (void)send_all(in_write.get(), input);  // small inputs only: fits in the pipe
  in_write.reset();

  CommandResult result;
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::array<char, 4096> buffer{};
  while (out_read || err_read) {
    std::array<pollfd, 2> watched{pollfd{out_read.get(), POLLIN, 0}, pollfd{err_read.get(), POLLIN, 0}};
    const auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      break;
    }
    const int ready = ::poll(watched.data(), watched.size(), static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    for (std::size_t index = 0; index < watched.size(); ++index) {
      if (watched[index].fd < 0 || watched[index].revents == 0) continue;
      auto& source = index == 0 ? out_read : err_read;
      auto& sink = index == 0 ? result.out : result.err;
      const auto got = ::read(source.get(), buffer.data(), buffer.size());
      if (got > 0) {
        sink.append(buffer.data(), static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        source.reset();
      }
    }
  }
  if (result.timed_out) {
    child->kill_and_reap();
  } else if (!child->wait_for_exit(std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now()) +
                                   Millis(500))) {
    result.timed_out = true;
    child->kill_and_reap();
  }
  if (child->exit_status()) result.status = *child->exit_status();
  return result;
}

}  // namespace portreuse
