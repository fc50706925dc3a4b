// Experiment 08 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("08 four-tuple: each step gives the Linux outcome") {
  const auto records = run_experiment_json("08");
  check_steps(records, "08");
  for (const auto& record : records) {
    CAPTURE(record.at("step"));
    // SO_REUSEADDR let both unconnected clients bind the same address and port.
    CHECK(record.at("first_bind") == "ok");
    CHECK(record.at("second_bind") == "ok");
    CHECK(record.at("first_connect") == "ok");
    // Closed with RST: nothing, not even a TIME_WAIT, stays on the clients' port.
    CHECK(record.at("left_on_client_port") == "[]");
  }
  const auto* duplicate = find_step(records, "duplicate-four-tuple-connect");
  REQUIRE(duplicate != nullptr);
  CHECK(duplicate->at("situation") == "tuple-taken");
  const auto* different = find_step(records, "reused-port-different-remote");
  REQUIRE(different != nullptr);
  CHECK(different->at("situation") == "tuple-free");
}

}  // namespace
}  // namespace portreuse::testing
