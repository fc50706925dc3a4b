// The TIME_WAIT helpers on hand-made socket tables: which side a TIME_WAIT belongs to.
#include "portreuse/time_wait.hpp"

#include <doctest/doctest.h>

#include "portreuse/json.hpp"

namespace portreuse {
namespace {

SocketEntry tcp_socket(TcpState state, const char* local, const char* remote) {
  SocketEntry entry;
  entry.state = state;
  entry.local = *Endpoint::parse_with_port(local);
  entry.remote = *Endpoint::parse_with_port(remote);
  return entry;
}

TEST_CASE("time wait: the side is the server's when the TIME_WAIT keeps the port itself") {
  const std::vector<SocketEntry> sockets{
      tcp_socket(TcpState::listen, "0.0.0.0:40000", "0.0.0.0:0"),
      tcp_socket(TcpState::time_wait, "127.0.0.1:40000", "127.0.0.1:51000"),
      tcp_socket(TcpState::time_wait, "127.0.0.1:52000", "127.0.0.1:40000"),
  };
  const auto found = time_waits_for(sockets, 40000);
  REQUIRE(found.size() == 2);
  CHECK(found[0].side == "server");
  CHECK(found[0].socket.local.port() == 40000);
  CHECK(found[1].side == "client");
  CHECK(found[1].socket.local.port() == 52000);
  CHECK(time_waits_for({sockets[0]}, 40000).empty());
}

TEST_CASE("time wait: the side recorded by restart_server reads back from the facts") {
  Observation observation;
  CHECK(time_wait_side_of(observation).empty());
  observation.facts.emplace_back("time_wait_side", json_quote("client"));
  CHECK(time_wait_side_of(observation) == "client");
}

}  // namespace
}  // namespace portreuse
