// Experiment 07 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("07 wildcard-vs-loopback: each step gives the Linux outcome") {
  const auto records = run_experiment_json("07");
  check_steps(records, "07");

  const auto* reuseaddr = find_step(records, "wildcard-then-loopback-reuseaddr");
  REQUIRE(reuseaddr != nullptr);
  CHECK(reuseaddr->at("verdict") == "depends-on-platform");

  const auto* early = find_step(records, "wildcard-then-loopback-reuseaddr-before-listen");
  REQUIRE(early != nullptr);
  // Both binds passed and the first listen() too: only the second listener is refused.
  CHECK(early->at("first_bind") == "ok");
  CHECK(early->at("second_bind") == "ok");
  CHECK(early->at("first_listen") == "ok");
  CHECK(early->at("situation") == "first-listening");

  const auto* reuseport = find_step(records, "wildcard-then-loopback-reuseport");
  REQUIRE(reuseport != nullptr);
  // 127.0.0.1 went to the exact match, 127.0.0.2 to the wildcard.
  CHECK(reuseport->at("situation") == "most-specific-wins");
}

}  // namespace
}  // namespace portreuse::testing
