// Experiment 17, repeated (label "long": ctest --preset long): 20 runs in a row give the same
// ordering of the strategies by refused connections, and the handovers lose nothing; then one
// run with --long (2,000 requests per strategy).
#include <doctest/doctest.h>

#include <string>

#include "17_zero_downtime_restart_check.hpp"
#include "test_support.hpp"

namespace portreuse::testing {

namespace {

TEST_SUITE("long") {
  TEST_CASE("17 zero-downtime-restart: 20 runs in a row give the same ordering") {
    for (int run = 0; run < 20; ++run) {
      CAPTURE(run);
      if (!check_zero_downtime_run()) return;  // namespaces not available here
    }
  }

  TEST_CASE("17 zero-downtime-restart --long: the handovers lose none of 2000 requests") {
    const auto records = run_experiment_json("17", {"--long"}, Millis(120000));
    check_steps(records, "17");
    const auto* heavier = find_step(records, "heavier-load");
    REQUIRE(heavier != nullptr);
    if (heavier->at("outcome") == "skipped") {
      WARN_MESSAGE(false, "17 skipped: " << heavier->at("why"));
      return;
    }
    CHECK(heavier->at("verdict") == "holds");
    CHECK(heavier->at("table").find("SCM_RIGHTS handover") != std::string::npos);
  }
}

}  // namespace
}  // namespace portreuse::testing
