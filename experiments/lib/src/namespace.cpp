// A private user + network namespace for one child process of a step, set up with calls that are
// recorded on the child's Trace like any other: unshare, the uid/gid map, lo up, the sysctls.
// The sysctls of a new network namespace are its own, so a lesson can shrink the ephemeral port
// range or switch tcp_tw_reuse off without touching the host's settings.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "portreuse/lab.hpp"

#ifdef __linux__
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#endif

namespace portreuse::lab {
namespace {

std::string sysctl_path(std::string_view name) {
  std::string path = "/proc/sys/";
  for (const char character : name) path += character == '.' ? '/' : character;
  return path;
}

#ifdef __linux__

// Writes text to a file of /proc in one write(); the result is the write's (or the open's).
Returned write_file(const std::string& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Returned(-1);
  const UniqueFd owned(fd);
  const Returned written = ::write(fd, text.data(), text.size());
  return written;
}

std::optional<std::pair<dev_t, ino_t>> network_namespace_identity() {
  struct stat info {};
  if (::stat("/proc/self/ns/net", &info) != 0) return std::nullopt;
  return std::pair{info.st_dev, info.st_ino};
}

#endif

}  // namespace

void own_connection_table() {
#ifdef __linux__
  // Plumbing, not narrated: a new network namespace shares the host's connection hash table
  // (262,144 buckets on a machine with 24 GiB), and every read of the socket table walks all of
  // it, about 2.4 ms each. Since Linux 6.1 a namespace gives the namespaces made from it a table
  // of their own (net.ipv4.tcp_child_ehash_entries): set it, then make the namespace the step
  // uses. Without that sysctl, or if the second unshare fails, the first private namespace stays:
  // the same sockets, read more slowly.
  if (write_file("/proc/sys/net/ipv4/tcp_child_ehash_entries", "1024").value >= 0) (void)::unshare(CLONE_NEWNET);
#endif
}

void enter_private_network(Trace& t, const std::vector<std::pair<std::string, std::string>>& sysctls) {
#ifndef __linux__
  (void)sysctls;
  t.must("unshare", Returned((errno = ENOSYS, -1)), "network namespaces are a Linux feature");
#else
  const auto host_namespace = network_namespace_identity();
  const auto uid = std::to_string(::getuid());
  const auto gid = std::to_string(::getgid());
  t.must("unshare", ::unshare(CLONE_NEWUSER | CLONE_NEWNET), "CLONE_NEWUSER | CLONE_NEWNET");
#ifdef PR_SET_PDEATHSIG
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // changing credentials may have cleared it
#endif
  // Without a mapping the process is "nobody" inside; mapped to root it may set the namespace's
  // sysctls. setgroups must be denied first for an unprivileged user (user_namespaces(7)); a
  // kernel without that file has no such rule.
  if (access("/proc/self/setgroups", F_OK) == 0) {
    t.must("write", write_file("/proc/self/setgroups", "deny"), "/proc/self/setgroups \"deny\"");
  }
  t.must("write", write_file("/proc/self/uid_map", "0 " + uid + " 1"),
         "/proc/self/uid_map \"0 " + uid + " 1\" (root inside is this user outside)");
  t.must("write", write_file("/proc/self/gid_map", "0 " + gid + " 1"), "/proc/self/gid_map \"0 " + gid + " 1\"");
  own_connection_table();
  const auto own_namespace = network_namespace_identity();
  if (!host_namespace || !own_namespace || *host_namespace == *own_namespace) {
    t.note("cannot confirm that this process left the host's network namespace: no sysctl is written");
    throw ScenarioBroke{"the private network namespace was not confirmed"};
  }
  // A new network namespace has only lo, and it is down.
  const int control = t.must("socket", ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const UniqueFd owned(control);
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", "lo");
  t.must("ioctl", ::ioctl(control, SIOCGIFFLAGS, &request), "SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  t.must("ioctl", ::ioctl(control, SIOCSIFFLAGS, &request), "SIOCSIFFLAGS lo IFF_UP (127.0.0.1, ::1)");
  for (const auto& [name, value] : sysctls) {
    t.must("sysctl", write_file(sysctl_path(name), value), name + " = " + value);
  }
#endif
}

PrivateNetwork::PrivateNetwork(Trace& t, const Lab& lab,
                               const std::vector<std::pair<std::string, std::string>>& sysctls)
    : t_(t), shared_(lab.shares_private_network()) {
  if (!shared_) {
    enter_private_network(t, sysctls);
    return;
  }
  // The runner made this namespace for the whole run (--ladder, --pcap) and holds its
  // capabilities; the capture on its lo sees only the run's own segments.
  t.note("stays in the run's private network namespace, where the ladder's capture listens");
  for (const auto& [name, value] : sysctls) set(name, value);
}

void PrivateNetwork::set(const std::string& name, const std::string& value) const {
#ifdef __linux__
  if (shared_) {
    const bool known =
        std::any_of(changed_.begin(), changed_.end(), [&](const auto& old) { return old.first == name; });
    if (!known) changed_.emplace_back(name, sysctl_value(name).value_or(""));
  }
  // A fresh trace: its call is placed when it returned, after whatever the step's other actors
  // in this process did since the last sysctl.
  auto now = t_.alongside(t_.actor(), t_.role());
  now.must("sysctl", write_file(sysctl_path(name), value), name + " = " + value);
#else
  t_.must("sysctl", Returned((errno = ENOSYS, -1)), name + " = " + value);
#endif
}

PrivateNetwork::~PrivateNetwork() {
#ifdef __linux__
  // Quietly: the step is over, and a failure still shows.
  auto quiet = t_.alongside(t_.actor(), t_.role());
  quiet.quiet();
  for (auto old = changed_.rbegin(); old != changed_.rend(); ++old) {
    if (old->second.empty()) continue;
    quiet.call("sysctl", write_file(sysctl_path(old->first), old->second),
               old->first + " = " + old->second + " (put back)");
  }
#endif
}

std::optional<std::string> sysctl_value(std::string_view name) {
  std::ifstream file(sysctl_path(name));
  if (!file) return std::nullopt;
  std::string value;
  std::getline(file, value);
  for (auto& character : value) {
    if (character == '\t') character = ' ';
  }
  return value;
}

}  // namespace portreuse::lab
