// The /proc/net/tcp reader, on lines captured from a real Linux 6.18 kernel.
#include "portreuse/socket_table.hpp"

#include <doctest/doctest.h>

#include <algorithm>

#include "portreuse/ports.hpp"

namespace portreuse {
namespace {

struct CapturedLine {
  const char* line;
  int family;
  TcpState state;
  const char* local;
  const char* remote;
  TimerKind timer;
  double seconds;
  unsigned long inode;
};

const CapturedLine kCaptured[] = {
    // A listener on 0.0.0.0:52449.
    {"   1: 00000000:CCE1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5566 1 "
     "00000000ff5389d1 100 0 0 10 0",
     AF_INET, TcpState::listen, "0.0.0.0:52449", "0.0.0.0:0", TimerKind::none, 0.0, 5566},
    // The server side of a closed connection in TIME_WAIT, 59.94 s left (0x176A ticks at 100 Hz).
    {"   2: 0100007F:CCE1 0100007F:BAD6 06 00000000:00000000 03:0000176A 00000000     0        0 0 3 "
     "000000000cce1583",
     AF_INET, TcpState::time_wait, "127.0.0.1:52449", "127.0.0.1:47830", TimerKind::time_wait, 59.94, 0},
    // A listener on [::1]:45171 from /proc/net/tcp6.
    {"   0: 00000000000000000000000001000000:B073 00000000000000000000000000000000:0000 0A "
     "00000000:00000000 00:00000000 00000000     0        0 5569 1 00000000e465214a 100 0 0 10 0",
     AF_INET6, TcpState::listen, "[::1]:45171", "[::]:0", TimerKind::none, 0.0, 5569},
};

TEST_CASE("socket table: captured /proc/net lines parse to state and endpoints and timer") {
  for (const auto& captured : kCaptured) {
    CAPTURE(captured.line);
    const auto entry = parse_proc_net_line(captured.line, captured.family, Transport::tcp, 100);
    REQUIRE(entry.has_value());
    CHECK(entry->state == captured.state);
    CHECK(entry->local.text() == captured.local);
    CHECK(entry->remote.text() == captured.remote);
    CHECK(entry->timer == captured.timer);
    CHECK(entry->timer_seconds == doctest::Approx(captured.seconds));
    CHECK(entry->inode == captured.inode);
  }
}

TEST_CASE("socket table: a TIME_WAIT line reads like ss prints it") {
  const auto entry = parse_proc_net_line(kCaptured[1].line, AF_INET, Transport::tcp, 100);
  REQUIRE(entry.has_value());
  CHECK(entry->describe() == "TIME-WAIT  127.0.0.1:52449 <-> 127.0.0.1:47830, 59.9 s left");
}

TEST_CASE("socket table: header and malformed lines are skipped") {
  for (const char* line :
       {"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", "",
        "   1: 0000:CCE1 00000000:0000 0A", "   1: zzzzzzzz:CCE1 00000000:0000 0A 0:0 00:0 0 0 0 1"}) {
    CAPTURE(line);
    CHECK_FALSE(parse_proc_net_line(line, AF_INET, Transport::tcp, 100).has_value());
  }
}

TEST_CASE("socket table: a live listener shows up in /proc with its owner") {
  auto port = free_tcp_port();
  REQUIRE(port.has_value());
  auto listener = open_socket(AF_INET);
  REQUIRE(listener.has_value());
  REQUIRE_FALSE(bind_to(listener->get(), *Endpoint::parse("127.0.0.1", *port)));
  REQUIRE_FALSE(listen_on(listener->get()));
  auto holders = sockets_holding(*port);
  REQUIRE(holders.has_value());
  REQUIRE(holders->size() == 1);
  CHECK(holders->front().is(TcpState::listen));
  const auto owner = find_socket_owner(holders->front().inode);
  REQUIRE(owner.has_value());
  CHECK(owner->pid == ::getpid());
}

TEST_CASE("socket table: netlink and /proc report the same listener and TIME_WAIT") {
  auto port = free_tcp_port();
  REQUIRE(port.has_value());
  const auto address = *Endpoint::parse("127.0.0.1", *port);
  auto listener = open_socket(AF_INET);
  REQUIRE(listener.has_value());
  REQUIRE_FALSE(bind_to(listener->get(), address));
  REQUIRE_FALSE(listen_on(listener->get()));
  auto client = open_socket(AF_INET);
  REQUIRE(client.has_value());
  REQUIRE_FALSE(connect_within(client->get(), address));
  auto accepted = accept_within(listener->get());
  REQUIRE(accepted.has_value());
  accepted->fd.reset();  // the server closes first: its side goes to TIME_WAIT
  REQUIRE_FALSE(wait_for_end_of_stream(client->get()));
  client->reset();

  const auto describe_port = [&](TableSource source) {
    auto table = read_socket_table(Transport::tcp, source);
    REQUIRE(table.has_value());
    std::vector<std::string> rows;
    for (const auto& entry : bound_to_port(*table, *port)) {
      rows.push_back(entry.state_name() + " " + entry.local.text() + " " + entry.remote.text());
      if (entry.is(TcpState::time_wait)) {
        CHECK(entry.timer == TimerKind::time_wait);
        CHECK(entry.timer_seconds > 50.0);
        CHECK(entry.timer_seconds <= 60.0);
      }
    }
    std::sort(rows.begin(), rows.end());
    return rows;
  };
  const auto from_netlink = describe_port(TableSource::netlink);
  const auto from_proc = describe_port(TableSource::proc);
  CHECK(from_netlink.size() == 2);  // LISTEN and TIME-WAIT
  CHECK(from_netlink == from_proc);
}

}  // namespace
}  // namespace portreuse
