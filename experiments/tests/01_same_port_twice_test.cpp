// Experiment 01 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("01 same-port-twice: each step gives the Linux outcome") {
  const auto records = run_experiment_json("01");
  check_steps(records, "01");
  const auto* restart = find_step(records, "restart-no-history");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("situation") == "clean");
  CHECK(restart->at("verdict") == "does-not-hold");
}

}  // namespace
}  // namespace portreuse::testing
