// Experiment 03 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("03 who-closes-first: each step gives the Linux outcome") {
  const auto records = run_experiment_json("03");
  check_steps(records, "03");
  const auto* restart = find_step(records, "restart-after-client-close");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("time_wait_side") == "client");
  CHECK(restart->at("situation") == "time-wait-on-client");
  CHECK(restart->at("verdict") == "inference-holds");
  // The client's TIME_WAIT keeps its ephemeral port, not the server's.
  CHECK(restart->at("time_wait_holds_port") != "null");
  CHECK(restart->at("time_wait_holds_port") != restart->at("port"));
  const double seconds_left = std::stod(restart->at("time_wait_seconds_left"));
  CHECK(seconds_left > 50.0);
  CHECK(seconds_left <= 60.0);
}

}  // namespace
}  // namespace portreuse::testing
