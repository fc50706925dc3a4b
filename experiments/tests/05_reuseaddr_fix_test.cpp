// Experiment 05 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // Both servers set SO_REUSEADDR=1: the TIME_WAIT socket and the new socket may share the port.
    {"restart-with-reuseaddr-both", "bind", "ok"},
    // The TIME_WAIT socket kept the old server's SO_REUSEADDR=0: Linux needs the option on both.
    {"restart-with-reuseaddr-new-only", "bind", "EADDRINUSE"},
    // 0 is the default: no reuse on either side.
    {"restart-with-reuseaddr-zero", "bind", "EADDRINUSE"},
    // The option arrives after bind() has already been refused.
    {"setsockopt-after-bind", "bind", "EADDRINUSE"},
};

TEST_CASE("05 reuseaddr-fix: each step gives the Linux outcome") {
  const auto records = run_experiment_json("05");
  check_steps(records, kLinuxOutcomes);
  for (const auto& row : kLinuxOutcomes) {
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
  CHECK(late->at("options_after_bind") == "SO_REUSEADDR=1");
}

}  // namespace
}  // namespace portreuse::testing
