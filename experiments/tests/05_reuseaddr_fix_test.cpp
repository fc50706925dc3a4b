// Experiment 05 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("05 reuseaddr-fix: each step gives the Linux outcome") {
  const auto records = run_experiment_json("05");
  check_steps(records, "05");
  for (const auto& row : expected_rows("05")) {
    const auto* step = find_step(records, row.step);
    REQUIRE(step != nullptr);
    CAPTURE(row.step);
    // What the restart met: the old server's connection in TIME_WAIT on the server's side.
    CHECK(step->at("situation") == "time-wait");
    CHECK(step->at("time_wait_side") == "server");
  }
  const auto* new_only = find_step(records, "restart-with-reuseaddr-new-only");
  REQUIRE(new_only != nullptr);
  CHECK(new_only->at("verdict") == "depends-on-platform");
  const auto* late = find_step(records, "setsockopt-after-bind");
  REQUIRE(late != nullptr);
  // The restarted server set SO_REUSEADDR=1 only after its bind() had answered: both calls are in
  // the step's record, in that order.
  const auto& calls = late->at("calls");
  const auto restarted = calls.find("server again");
  REQUIRE(restarted != std::string::npos);
  const auto bound = calls.find(": bind 0.0.0.0:" + late->at("port") + " -> EADDRINUSE", restarted);
  const auto option = calls.find(": setsockopt SO_REUSEADDR=1 -> ok", restarted);
  REQUIRE(bound != std::string::npos);
  REQUIRE(option != std::string::npos);
  CHECK(bound < option);
}

}  // namespace
}  // namespace portreuse::testing
