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

TEST_CASE("time wait: only the connection's own TIME_WAIT counts and its side is named") {
  const std::vector<SocketEntry> sockets{
      tcp_socket(TcpState::listen, "0.0.0.0:40000", "0.0.0.0:0"),
      // This step's connection 127.0.0.1:51000 -> 40000, closed first by the server.
      tcp_socket(TcpState::time_wait, "127.0.0.1:40000", "127.0.0.1:51000"),
      // An earlier user of port 40000, whose client closed first: not this step's business.
      tcp_socket(TcpState::time_wait, "127.0.0.1:52000", "127.0.0.1:40000"),
  };
  const auto server_side = time_waits_of_connection(sockets, 40000, 51000);
  REQUIRE(server_side.size() == 1);
  CHECK(server_side[0].side == "server");
  CHECK(server_side[0].socket.local.port() == 40000);

  const auto client_side = time_waits_of_connection(sockets, 40000, 52000);
  REQUIRE(client_side.size() == 1);
  CHECK(client_side[0].side == "client");
  CHECK(client_side[0].socket.local.port() == 52000);

  CHECK(time_waits_of_connection(sockets, 40000, 53000).empty());
  CHECK(time_waits_of_connection({sockets[0]}, 40000, 51000).empty());
}

TEST_CASE("time wait: the side recorded by restart_server reads back from the facts") {
  Observation observation;
  CHECK(time_wait_side_of(observation).empty());
  observation.facts.emplace_back("time_wait_side", json_quote("client"));
  CHECK(time_wait_side_of(observation) == "client");
  CHECK(observation.fact("time_wait_side") == json_quote("client"));
  CHECK_FALSE(observation.fact("client_port").has_value());
}

}  // namespace
}  // namespace portreuse
