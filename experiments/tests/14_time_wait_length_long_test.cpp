// The steps that wait on kernel timers (label "long": ctest --preset long).
#include <doctest/doctest.h>

#include <sstream>

#include "portreuse/json.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// With --long, and a deadline that fits a minute of TIME_WAIT.
std::vector<Record> run_long(const std::string& number) {
  return run_experiment_json(number, {"--long"}, Millis(200000));
}

TEST_SUITE("long") {
  TEST_CASE("14 time-wait-length --long: TIME_WAIT ends after about a minute") {
    const auto records = run_long("14");
    check_steps(records, "14");
    const auto* duration = find_step(records, "time-wait-duration");
    REQUIRE(duration != nullptr);
    CHECK(duration->at("situation") == "about-a-minute");
    const double seconds = std::stod(duration->at("seconds"));
    CHECK(seconds >= 55.0);
    CHECK(seconds <= 70.0);
  }

  TEST_CASE("13 client-side --long: tcp_tw_reuse = 1 reuses a TIME_WAIT port after the delay") {
    const auto records = run_long("13");
    const auto* reuse = find_step(records, "ephemeral-exhausted-tw-reuse");
    REQUIRE(reuse != nullptr);
    if (reuse->at("outcome") == "skipped") {
      WARN_MESSAGE(false, "13 skipped: " << reuse->at("why"));
      return;
    }
    check_steps(records, "13");
    CHECK(reuse->at("first_failure") == "EADDRNOTAVAIL");
    CHECK(reuse->at("situation") == "reused-time-wait-port");
  }
}

}  // namespace
}  // namespace portreuse::testing
