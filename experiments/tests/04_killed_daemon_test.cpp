// Experiment 04 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("04 killed-daemon: each step gives the Linux outcome") {
  const auto records = run_experiment_json("04");
  check_steps(records, "04");
  for (const auto& row : expected_rows("04")) {
    const auto* step = find_step(records, row.step);
    REQUIRE(step != nullptr);
    CAPTURE(row.step);
    // The killed listener is gone; what holds the port is the child's live connection.
    CHECK(step->at("situation") == "connection");
    // A real SIGKILL ended the daemon, and it had forked the child that still serves.
    CHECK(step->at("calls").find("ended by SIGKILL") != std::string::npos);
    CHECK(step->at("calls").find("daemon's child") != std::string::npos);
    CHECK(step->at("verdict") == "holds");
  }
}

}  // namespace
}  // namespace portreuse::testing
