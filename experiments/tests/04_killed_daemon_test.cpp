// Experiment 04 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // The child's ESTABLISHED socket on P blocks a plain wildcard bind of P.
    {"restart-while-child-holds-connection", "bind", "EADDRINUSE"},
    // With SO_REUSEADDR on the old listener (inherited by the connection) and the new one, it binds.
    {"restart-while-child-holds-connection-reuseaddr", "bind", "ok"},
};

TEST_CASE("04 killed-daemon: each step gives the Linux outcome") {
  const auto records = run_experiment_json("04");
  check_steps(records, kLinuxOutcomes);
  for (const auto& row : kLinuxOutcomes) {
    const auto* step = find_step(records, row.step);
    REQUIRE(step != nullptr);
    CAPTURE(row.step);
    // The killed listener is gone; what holds the port is the child's live connection.
    CHECK(step->at("situation") == "connection");
    CHECK(step->at("stop_signal") == "SIGKILL");
    CHECK(step->at("verdict") == "holds");
  }
}

}  // namespace
}  // namespace portreuse::testing
