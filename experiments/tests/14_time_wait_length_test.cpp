// Experiment 14's fast step against the live kernel (the measurement is in the long tests).
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // The restart meets the server's TIME_WAIT.
    {"time-wait-timer", "bind", "EADDRINUSE"},
};

TEST_CASE("14 time-wait-length: each fast step gives the Linux outcome") {
  const auto records = run_experiment_json("14");
  check_steps(records, kLinuxOutcomes);
  const auto* timer = find_step(records, "time-wait-timer");
  REQUIRE(timer != nullptr);
  CHECK(timer->at("situation") == "timer-within-a-minute");
  // Read right after the TIME_WAIT began: a little under Linux's 60 s.
  const double left = std::stod(timer->at("seconds_left"));
  CHECK(left > 50.0);
  CHECK(left <= 60.5);
}

}  // namespace
}  // namespace portreuse::testing
