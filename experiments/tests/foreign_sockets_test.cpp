// A step's socket table marks the sockets of other programs on the step's port, so that a
// student does not read them as the run's own (Lab::show_sockets), and leaves the run's own
// sockets unmarked.
#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <sstream>

#include "portreuse/lab.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("step tables: another program's socket on the port is marked and the run's own are not") {
  const auto port = free_tcp_port();
  REQUIRE(port.has_value());
  const auto address = *Endpoint::parse("127.0.0.1", *port);

  // Another program: a grandchild whose parent has exited, so that it is no descendant of this
  // process any more. It listens until its pipe closes (bounded by an alarm in any case).
  std::array<int, 2> ready{};
  std::array<int, 2> hold{};
  REQUIRE(::pipe(ready.data()) == 0);
  REQUIRE(::pipe(hold.data()) == 0);
  // The test runner adopts orphans (a child subreaper): not for this one, so that it leaves the
  // run as another program would be outside it.
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  const pid_t middle = ::fork();
  REQUIRE(middle >= 0);
  if (middle == 0) {
    if (::fork() == 0) {
      ::alarm(20);
      ::close(ready[0]);
      ::close(hold[1]);
      auto listener = open_socket(AF_INET);
      const bool up = listener && !bind_to(listener->get(), address) && !listen_on(listener->get());
      const char byte = up ? 'y' : 'n';
      (void)!::write(ready[1], &byte, 1);
      ::close(ready[1]);
      char ignored = 0;
      (void)!::read(hold[0], &ignored, 1);
      ::_exit(0);
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(hold[0]);
  int status = 0;
  ::waitpid(middle, &status, 0);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  CHECK(byte == 'y');

  // The run's own socket: a client of that listener, in this process.
  auto client = open_socket(AF_INET);
  REQUIRE(client.has_value());
  REQUIRE_FALSE(connect_within(client->get(), address));

  std::ostringstream shown;
  const Narrator narrator(shown, true, false);
  {
    lab::Lab lab(narrator, *port, false);
    (void)lab.show_sockets("the port's sockets:");
  }
  ::close(hold[1]);  // the other program ends

  const auto text = shown.str();
  CAPTURE(text);
  CHECK(text.find("LISTEN") != std::string::npos);
  CHECK(text.find("(another program's: pid ") != std::string::npos);
  // The mark is on the listener's row only: one row is this process's own client socket.
  std::size_t marks = 0;
  for (auto at = text.find("another program's"); at != std::string::npos; at = text.find("another program's", at + 1)) {
    ++marks;
  }
  CHECK(marks == 1);
}

}  // namespace
}  // namespace portreuse::testing
