// Unit tests of tally_accepts(): it counts where connections go and leaves nothing behind.
#include "portreuse/traffic.hpp"

#include <doctest/doctest.h>

#include "portreuse/ports.hpp"

namespace portreuse {
namespace {

// A listener on 127.0.0.1 and a port the kernel chose.
UniqueFd loopback_listener() {
  auto socket = open_socket(AF_INET);
  REQUIRE(socket.has_value());
  REQUIRE_FALSE(bind_to(socket->get(), *Endpoint::parse("127.0.0.1", 0)));
  REQUIRE_FALSE(listen_on(socket->get()));
  return std::move(socket.value());
}

TEST_CASE("traffic: every client is counted on the listener that accepted it") {
  auto listener = loopback_listener();
  const auto address = local_endpoint(listener.get());
  REQUIRE(address.has_value());
  const auto tally = tally_accepts({listener.get()}, *address, 5, Millis(2000));
  CHECK_FALSE(tally.failure);
  CHECK(tally.connected == 5);
  REQUIRE(tally.accepted.size() == 1);
  CHECK(tally.accepted[0] == 5);
  CHECK(tally.total_accepted() == 5);
  REQUIRE(tally.first_peer[0].has_value());
  CHECK(tally.first_peer[0]->is_loopback());
  // The connections were reset, so only the listener holds the port: no TIME_WAIT.
  const auto holders = sockets_holding(address->port());
  REQUIRE(holders.has_value());
  REQUIRE(holders->size() == 1);
  CHECK(holders->front().is(TcpState::listen));
}

TEST_CASE("traffic: a port nobody listens on reports the refused connect") {
  Endpoint address;
  {
    auto listener = loopback_listener();
    address = *local_endpoint(listener.get());
  }
  const auto tally = tally_accepts({}, address, 3, Millis(1000));
  CHECK(tally.failure == make_error(ECONNREFUSED));
  CHECK(tally.connected == 0);
  CHECK(tally.total_accepted() == 0);
}

}  // namespace
}  // namespace portreuse
