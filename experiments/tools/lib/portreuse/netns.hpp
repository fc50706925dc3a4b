// A scenario run in a network namespace of its own: a child process enters a fresh user and
// network namespace, brings its loopback up, sets sysctls that only exist inside that namespace,
// and reports what it does to the parent over a pipe. This is how a lesson can shrink the
// ephemeral port range or switch tcp_tw_reuse off without touching the host's settings.
// Linux only; elsewhere (or where namespaces are not permitted) the run says why it cannot happen.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "portreuse/child.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

struct NamespacePlan {
  // Written inside the new namespace, in order: {"net.ipv4.ip_local_port_range", "40000 40004"}.
  std::vector<std::pair<std::string, std::string>> sysctls;
  Millis deadline = kDefaultDeadline;  // the whole run, setup included; the child is killed after it
};

struct NamespaceEvent {
  bool setup = false;   // reported by the helper while preparing the namespace, not by the body
  std::string kind;     // "unshare", "loopback", "sysctl"; for the body whatever it reports
  std::string outcome;  // "ok" or an errno name
  std::string detail;

  [[nodiscard]] bool ok() const { return outcome == "ok"; }
};

// Given to the body inside the namespace: each report becomes one NamespaceEvent in the parent.
class NamespaceReporter {
 public:
  explicit NamespaceReporter(int fd) noexcept : fd_(fd) {}
  void report(std::string_view kind, std::error_code outcome, std::string_view detail = {}) const;

 private:
  int fd_;
};

struct NamespaceRun {
  std::optional<std::string> unavailable;  // this system does not allow the namespace: why (skip the step)
  std::vector<NamespaceEvent> events;      // in the order they were reported
  std::optional<ExitStatus> status;        // how the child ended
  bool timed_out = false;                  // the child was still running at the deadline and was killed
};

// Forks a child that calls unshare(CLONE_NEWUSER | CLONE_NEWNET), maps its own uid and gid to root
// inside, checks that it really is in a new network namespace, brings `lo` up, writes the plan's
// sysctls there, and then runs body; body's return value is the child's exit status. Each event
// is handed to on_event as it arrives (for narration) and kept in the result. The child is
// always reaped. The host's sysctls are never written: the helper refuses unless the namespace
// changed.
Result<NamespaceRun> run_in_network_namespace(const NamespacePlan& plan,
                                              const std::function<int(const NamespaceReporter&)>& body,
                                              const std::function<void(const NamespaceEvent&)>& on_event = {});

// The value of a sysctl as the calling process sees it ("net.ipv4.tcp_tw_reuse" -> "2"), from
// /proc/sys. Inside the namespace's body it reads the namespace's value.
Result<std::string> read_sysctl(std::string_view name);

}  // namespace portreuse
