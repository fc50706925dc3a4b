// Experiment 06 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("06 specific-addresses: each step gives the Linux outcome") {
  const auto records = run_experiment_json("06");
  check_steps(records, "06");
  const auto* step = find_step(records, "two-specific-addresses");
  REQUIRE(step != nullptr);
  // Each connection reached the server bound to the address it was sent to.
  CHECK(step->at("situation") == "each-reached-its-own");
  CHECK(step->at("verdict") == "holds");
}

}  // namespace
}  // namespace portreuse::testing
