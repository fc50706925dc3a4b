#include "portreuse/netns.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "portreuse/event_pipe.hpp"

#ifdef __linux__
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#endif

namespace portreuse {
namespace {

using Clock = std::chrono::steady_clock;

// Exit status of a child that could not prepare the namespace (it has said why over the pipe).
constexpr int kNamespaceUnavailable = 3;

// One line per event; the source is a tag: 'S' setup, 'B' body, 'U' unavailable.
void send_line(int fd, char tag, std::string_view kind, std::string_view outcome, std::string_view detail) {
  write_pipe_event(fd, std::string(1, tag), kind, outcome, detail);
}

std::string sysctl_path(std::string_view name) {
  std::string path = "/proc/sys/";
  for (const char character : name) path += character == '.' ? '/' : character;
  return path;
}

#ifdef __linux__

std::error_code write_file(const std::string& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return last_error();
  UniqueFd owned(fd);
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return last_error();
  return {};
}

std::optional<std::pair<dev_t, ino_t>> network_namespace_identity() {
  struct stat info {};
  if (::stat("/proc/self/ns/net", &info) != 0) return std::nullopt;
  return std::pair{info.st_dev, info.st_ino};
}

std::error_code bring_loopback_up() {
  auto control = open_socket(AF_INET, Transport::udp);
  if (!control) return control.error();
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", "lo");
  if (::ioctl(control->get(), SIOCGIFFLAGS, &request) != 0) return last_error();
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(control->get(), SIOCSIFFLAGS, &request) != 0) return last_error();
  return {};
}

// Runs in the child. Returns false after telling the parent why the namespace cannot be had.
bool prepare_namespace(const NamespacePlan& plan, int fd) {
  const auto unavailable = [fd](const std::string& why) {
    send_line(fd, 'U', "-", "-", why);
    return false;
  };
  const auto host_namespace = network_namespace_identity();
  const auto uid = ::getuid();
  const auto gid = ::getgid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    const auto error = last_error();
    return unavailable("unshare(CLONE_NEWUSER | CLONE_NEWNET) failed with " + describe_outcome(error) +
                       ": this system does not let this user create namespaces (see "
                       "/proc/sys/user/max_user_namespaces, or a container's seccomp profile)");
  }
  send_line(fd, 'S', "unshare", "ok", "CLONE_NEWUSER | CLONE_NEWNET");
#ifdef PR_SET_PDEATHSIG
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // changing credentials may have cleared it
#endif
  // Without a mapping the process is "nobody" inside; mapped to root it may set the namespace's
  // sysctls. setgroups must be denied first for an unprivileged user (user_namespaces(7)).
  if (auto error = write_file("/proc/self/setgroups", "deny"); error && error.value() != ENOENT) {
    return unavailable("writing /proc/self/setgroups failed: " + describe_outcome(error));
  }
  if (auto error = write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1")) {
    return unavailable("writing /proc/self/uid_map failed: " + describe_outcome(error));
  }
  if (auto error = write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
    return unavailable("writing /proc/self/gid_map failed: " + describe_outcome(error));
  }
  send_line(fd, 'S', "id-map", "ok",
            "uid " + std::to_string(uid) + ", gid " + std::to_string(gid) + " -> root inside the namespace");
  const auto own_namespace = network_namespace_identity();
  if (!host_namespace || !own_namespace || *host_namespace == *own_namespace) {
    return unavailable(
        "cannot confirm that this process left the host's network namespace; "
        "refusing to change any sysctl");
  }
  if (auto error = bring_loopback_up()) {
    return unavailable("bringing lo up in the new namespace failed: " + describe_outcome(error));
  }
  send_line(fd, 'S', "loopback", "ok", "lo is up (127.0.0.1, ::1)");
  for (const auto& [name, value] : plan.sysctls) {
    if (auto error = write_file(sysctl_path(name), value)) {
      return unavailable("setting " + name + " = " + value +
                         " inside the namespace failed: " + describe_outcome(error));
    }
    send_line(fd, 'S', "sysctl", "ok", name + " = " + value);
  }
  return true;
}

std::optional<NamespaceEvent> namespace_event(PipeEvent reported, std::optional<std::string>& unavailable) {
  if (reported.source == "U") {
    unavailable = std::move(reported.detail);
    return std::nullopt;
  }
  NamespaceEvent event;
  event.setup = reported.source == "S";
  event.kind = std::move(reported.kind);
  event.outcome = std::move(reported.outcome);
  event.detail = std::move(reported.detail);
  return event;
}

#endif

}  // namespace

void NamespaceReporter::report(std::string_view kind, std::error_code outcome, std::string_view detail) const {
  send_line(fd_, 'B', kind, outcome_name(outcome), detail);
}

Result<std::string> read_sysctl(std::string_view name) {
  std::ifstream file(sysctl_path(name));
  if (!file) return make_error(ENOENT);
  std::string value;
  std::getline(file, value);
  for (auto& character : value) {
    if (character == '\t') character = ' ';
  }
  return value;
}

Result<NamespaceRun> run_in_network_namespace(const NamespacePlan& plan,
                                              const std::function<int(const NamespaceReporter&)>& body,
                                              const std::function<void(const NamespaceEvent&)>& on_event) {
  NamespaceRun run;
#ifndef __linux__
  (void)plan;
  (void)body;
  (void)on_event;
  run.unavailable = "network namespaces are a Linux feature; this system has none, so this step cannot run here";
  return run;
#else
  std::array<int, 2> ends{};
  if (::pipe2(ends.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  auto child = ChildProcess::fork_running([&]() {
    read_end.reset();
    if (!prepare_namespace(plan, write_end.get())) return kNamespaceUnavailable;
    return body(NamespaceReporter(write_end.get()));
  });
  if (!child) return child.error();
  write_end.reset();

  const auto until = Clock::now() + plan.deadline;
  PipeEventReader events(std::move(read_end));
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(until - Clock::now());
    auto reported = events.next(left.count() > 0 ? left : Millis(0));
    if (!reported) {
      run.timed_out = !events.closed();  // else the child (and anything it forked) is done writing
      break;
    }
    if (auto event = namespace_event(std::move(*reported), run.unavailable)) {
      if (on_event) on_event(*event);
      run.events.push_back(std::move(*event));
    }
  }
  if (run.timed_out || !child->wait_for_exit(Millis(1000))) {
    run.timed_out = true;
    child->kill_and_reap();
  }
  run.status = child->exit_status();
  return run;
#endif
}

}  // namespace portreuse
