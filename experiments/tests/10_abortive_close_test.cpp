// Experiment 10 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("10 abortive-close: each step gives the Linux outcome") {
  const auto records = run_experiment_json("10");
  check_steps(records, "10");

  const auto* restart = find_step(records, "restart-after-linger-abort");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("situation") == "clean");
  CHECK(restart->at("time_wait_side") == "none");

  // What send() had taken but the network had not delivered is gone with the reset.
  const auto* read = find_step(records, "linger-abort-peer-read");
  REQUIRE(read != nullptr);
  CHECK(read->at("situation") == "partly-delivered");
  const auto sent = std::stoll(read->at("bytes_sent_by_server"));
  const auto got = std::stoll(read->at("bytes_read_by_client"));
  CHECK(got < sent);
  CHECK(std::stoll(read->at("bytes_lost")) == sent - got);
  // Nothing of the connection is left on the port: no TIME_WAIT, no half-closed socket.
  CHECK(read->at("sockets_after_reset") == "0");
  CHECK(read->at("read_after_error") == "recv -> 0 (end of stream)");
}

}  // namespace
}  // namespace portreuse::testing
