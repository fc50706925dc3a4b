// The test runner's main. Tests start real programs, and some of those fork on purpose into
// process groups of their own (tcp_server --fork keeps a child serving after its listener is
// stopped, as the HP-UX daemon does), out of reach of the test's group kill. So the runner is a
// child subreaper: such orphans become its children, and before it exits it kills and reaps every
// child it still has. Nothing a test started outlives the test, not even as a zombie for init.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace {

void reap_every_child() {
  // Killing a child can hand its own children to this process a moment later, so the list is
  // read again until no child is left (bounded: SIGKILL does not wait for anyone's cooperation).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD) return;
#ifdef __linux__
    // The kernel lists a process's children per thread; this runner has one thread.
    std::ifstream children("/proc/self/task/" + std::to_string(::getpid()) + "/children");
    std::string pid_text;
    while (children >> pid_text) ::kill(static_cast<pid_t>(std::stol(pid_text)), SIGKILL);
#endif
    if (std::chrono::steady_clock::now() >= until) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
#ifdef PR_SET_CHILD_SUBREAPER
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
  const int status = doctest::Context(argc, argv).run();
  reap_every_child();
  return status;
}
