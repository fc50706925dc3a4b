// Unit tests of the lab: what a Trace records, how events of child processes come back, and that
// a verdict needs its evidence (otherwise "could not run", naming the call that really failed).
#include "portreuse/lab.hpp"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <iostream>
#include <sstream>

#include "portreuse/ports.hpp"

namespace portreuse::lab {
namespace {

// A Lab whose narration goes nowhere: the tests read its events and observations.
struct QuietLab {
  std::ostringstream sink;
  Narrator narrator{sink, false, false};
  Lab lab;
  explicit QuietLab(std::uint16_t port) : lab(narrator, port, true) {}
};

std::uint16_t some_port() {
  auto port = free_tcp_port();
  REQUIRE(port.has_value());
  return *port;
}

TEST_CASE("lab: errno is read the moment the call returns and an unknown errno keeps its number") {
  QuietLab quiet(some_port());
  auto t = quiet.lab.actor("tester");
  errno = 0;
  const int closed = t.call("close", ::close(-1));
  CHECK(closed == -1);
  REQUIRE(quiet.lab.events().size() == 1);
  CHECK(quiet.lab.events().front().error == EBADF);
  // A value no name table knows is printed as its number, never as another errno.
  errno = 0;
  const Returned odd = [] {
    errno = 4242;
    return -1L;
  }();
  t.call("bind", odd, "nowhere");
  CHECK(quiet.lab.events().back().error == 4242);
  CHECK(quiet.lab.events().back().text().find("errno 4242") != std::string::npos);
  CHECK(quiet.lab.events().back().text().find("EIO") == std::string::npos);
}

TEST_CASE("lab: a child's calls come back over the pipe with their real errno and its pid") {
  QuietLab quiet(some_port());
  auto child = quiet.lab.spawn("child", Role::server, [](Trace& t) {
    errno = 0;
    const Returned failed = [] {
      errno = 200;  // outside the name table
      return -1L;
    }();
    t.call("accept", failed);
  });
  const auto accept = child.wait_for("accept");
  REQUIRE(accept.has_value());
  CHECK(accept->error == 200);
  CHECK(accept->pid == child.pid());
  CHECK(accept->text().find("errno 200") != std::string::npos);
  child.reap();
}

TEST_CASE("lab: without its evidence a step could not run and the call that failed is named") {
  QuietLab quiet(some_port());
  auto server = quiet.lab.spawn("server", Role::server, [](Trace& t) {
    const Returned failed = [] {
      errno = EMFILE;
      return -1L;
    }();
    t.must("accept", failed);  // ends the child: the scenario cannot go on
  });
  const auto accepted = server.wait_for("accept");
  REQUIRE(accepted.has_value());
  const auto observation = quiet.lab.observe(accepted, {Evidence::accepted});
  REQUIRE(observation.could_not_run.has_value());
  CHECK(observation.could_not_run->find("accept") != std::string::npos);
  CHECK(observation.could_not_run->find("EMFILE") != std::string::npos);
  server.reap();
}

TEST_CASE("lab: the end of stream a client reads is evidence that the server closed first") {
  const auto port = some_port();
  QuietLab quiet(port);
  const auto where = quiet.lab.loopback();
  auto server = quiet.lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, where.raw(), where.raw_length()), where);
    t.must("listen", ::listen(listener, 1));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must("close", ::close(connection));
  });
  server.must_reach("listen");
  auto client = quiet.lab.actor("client", Role::client);
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, where.raw(), where.raw_length()), where);
  server.must_reach("close");
  client.receive_text(fd);
  CHECK(quiet.lab.saw(Evidence::accepted));
  CHECK(quiet.lab.saw(Evidence::server_closed_first));
  CHECK_FALSE(quiet.lab.saw(Evidence::client_closed_first));
  server.reap();
}

TEST_CASE("lab: an exchange is evidence only when bytes went both ways and a missing request stops the step") {
  QuietLab quiet(some_port());
  std::array<int, 2> ends{};
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, ends.data()) == 0);
  auto client = quiet.lab.actor("client", Role::client);
  auto server = quiet.lab.actor("server", Role::server);
  client.send_text(ends[0], "hello");
  CHECK(server.must_receive_text(ends[1]) == "hello");
  CHECK_FALSE(quiet.lab.saw(Evidence::exchanged));  // the answer has not come back yet
  server.send_text(ends[1], "received");
  CHECK(client.receive_text(ends[0]) == "received");
  CHECK(quiet.lab.saw(Evidence::exchanged));
  // The client hangs up without a second message: the server cannot answer what never came.
  ::close(ends[0]);
  CHECK_THROWS_AS(server.must_receive_text(ends[1]), ScenarioBroke);
  CHECK(quiet.lab.events().back().call == Call::recv);
  CHECK(quiet.lab.events().back().value == 0);
  ::close(ends[1]);
}

TEST_CASE("lab: a child that ended before the point the step needs names its own failed call") {
  QuietLab quiet(some_port());
  auto you = quiet.lab.actor("you");
  you.call("close", ::close(-1));  // an earlier failure of another actor (EBADF): not the cause
  auto server = quiet.lab.spawn("server", Role::server, [](Trace& t) {
    const Returned failed = [] {
      errno = ECONNRESET;
      return -1L;
    }();
    t.must("recv", failed);  // the request never came: the child ends before it closes
    t.must("close", ::close(-1));
  });
  CHECK_THROWS_AS(server.must_reach("close"), ScenarioBroke);
  const auto observation = quiet.lab.could_not_run("the server never answered");
  REQUIRE(observation.could_not_run.has_value());
  CHECK(observation.could_not_run->find("recv") != std::string::npos);
  CHECK(observation.could_not_run->find("ECONNRESET") != std::string::npos);
  CHECK(observation.could_not_run->find("EBADF") == std::string::npos);
  server.reap();
}

TEST_CASE("lab: a fork that fails is recorded with its errno and ends the step") {
  QuietLab quiet(some_port());
  auto t = quiet.lab.actor("daemon", Role::server);
  const Returned failed = [] {
    errno = EAGAIN;
    return -1L;
  }();
  CHECK_THROWS_AS(t.must("fork", failed), ScenarioBroke);
  const auto observation = quiet.lab.could_not_run("the daemon could not fork");
  REQUIRE(observation.could_not_run.has_value());
  CHECK(observation.could_not_run->find("fork") != std::string::npos);
  CHECK(observation.could_not_run->find("EAGAIN") != std::string::npos);
}

}  // namespace
}  // namespace portreuse::lab
