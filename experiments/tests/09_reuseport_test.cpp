// Experiment 09 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>
#include <unistd.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// The Linux outcomes are in experiments/expected_outcomes.txt. Only root can create a socket
// under another user; anyone else gets an honest skip of that step.
TEST_CASE("09 reuseport: each step gives the Linux outcome") {
  const auto records = run_experiment_json("09");
  check_steps(records, "09");
  const auto* other = find_step(records, "reuseport-other-uid");
  REQUIRE(other != nullptr);
  if (::geteuid() == 0) {
    CHECK(other->at("outcome") == "EADDRINUSE");
    CHECK(other->at("listener_uid") == "0");
    CHECK(other->at("other_uid") == "65534");
  } else {
    CHECK(other->at("outcome") == "skipped");
  }

  const auto* both = find_step(records, "restart-with-reuseport-both");
  REQUIRE(both != nullptr);
  CHECK(both->at("situation") == "time-wait");
  const auto* new_only = find_step(records, "restart-with-reuseport-new-only");
  REQUIRE(new_only != nullptr);
  CHECK(new_only->at("situation") == "time-wait");
  CHECK(new_only->at("verdict") == "does-not-hold");
}

TEST_CASE("09 reuseport: the kernel spreads 200 connections over both listeners") {
  const auto records = run_experiment_json("09");
  const auto* shared = find_step(records, "two-listeners-reuseport");
  REQUIRE(shared != nullptr);
  CHECK(shared->at("situation") == "shared");
  REQUIRE(shared->count("accepted_first") == 1);
  REQUIRE(shared->count("accepted_second") == 1);
  const int first = std::stoi(shared->at("accepted_first"));
  const int second = std::stoi(shared->at("accepted_second"));
  CHECK(shared->at("connections") == "200");
  // A 4-tuple hash that gave one listener nothing out of 200 would be a 2^-199 event.
  CHECK(first > 0);
  CHECK(second > 0);
  CHECK(first + second == 200);
}

}  // namespace
}  // namespace portreuse::testing
