// Child processes that are always reaped: on destruction, on failure, and on Ctrl+C.
// Each child leads its own process group, so killing the group also reaches anything it forked
// (the fork-per-connection daemon of the HP-UX example leaves such a grandchild behind).
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "portreuse/errors.hpp"
#include "portreuse/fd.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

struct ExitStatus {
  bool exited = false;  // true: exit code; false: killed by signal
  int code = 0;
  int signal = 0;

  [[nodiscard]] static ExitStatus from_wait_status(int status);
  [[nodiscard]] std::string describe() const;  // "exited with status 0", "ended by SIGINT"
};

// "SIGINT" for SIGINT.
std::string signal_name(int signal_number);

// Installs handlers for SIGINT, SIGTERM and SIGHUP that kill and reap every live child (and its
// group), then let the signal end this process as it would have. Also makes this process the
// reaper of its orphaned grandchildren, so none of them outlives it unseen. Call once in main().
void install_interrupt_cleanup();

class ChildProcess {
 public:
  // Forks; the child runs body and _exits with its return value. The child starts with default
  // signal dispositions, so SIGINT ends it exactly as Ctrl+C ends the articles' servers.
  static Result<ChildProcess> fork_running(const std::function<int()>& body);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool running() const noexcept { return pid_ > 0 && !status_; }
  std::error_code send_signal(int signal_number) const;
  // Reaps the child if it ends within the deadline; nullopt if it is still running.
  std::optional<ExitStatus> wait_for_exit(Millis deadline = kDefaultDeadline);
  [[nodiscard]] const std::optional<ExitStatus>& exit_status() const noexcept { return status_; }
  // SIGKILL to the child's whole process group, then reap them all (bounded).
  void kill_and_reap() noexcept;

 private:
  explicit ChildProcess(pid_t pid) noexcept : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
};

// For the body of fork_running: replaces the child with the program argv[0] (a path) and its
// arguments. Returns 127, after saying why on stderr, only when exec failed.
int exec_program(const std::vector<std::string>& argv);

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs a program with the given arguments, stdin from /dev/null (or `input`), captures stdout and
// stderr; killed after the deadline. Used by the tests and the tools.
Result<CommandResult> run_command(const std::vector<std::string>& argv, Millis deadline, const std::string& input = {});

}  // namespace portreuse
