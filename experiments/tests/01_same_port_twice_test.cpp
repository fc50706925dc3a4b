// Experiment 01 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // A second live listener on the same wildcard address and port is refused.
    {"two-listeners-same-port", "bind", "EADDRINUSE"},
    // A server that never had a client leaves nothing behind: the restart binds at once.
    {"restart-no-history", "bind", "ok"},
};

TEST_CASE("01 same-port-twice: each step gives the Linux outcome") {
  const auto records = run_experiment_json("01");
  check_steps(records, kLinuxOutcomes);
  const auto* restart = find_step(records, "restart-no-history");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("situation") == "clean");
  CHECK(restart->at("verdict") == "does-not-hold");
}

}  // namespace
}  // namespace portreuse::testing
