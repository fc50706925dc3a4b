// Experiment 12 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("12 udp: each step gives the Linux outcome") {
  const auto records = run_experiment_json("12");
  check_steps(records, "12");
  const auto* shared = find_step(records, "udp-two-binds-reuseaddr");
  REQUIRE(shared != nullptr);
  CHECK(shared->at("udp_sockets_on_port") == "2");
  // Every datagram arrives, and only one socket gets them (which one is observed, not assumed).
  const int first = std::stoi(shared->at("received_first"));
  const int second = std::stoi(shared->at("received_second"));
  CHECK(first + second == std::stoi(shared->at("sent")));
  CHECK((first == 0 || second == 0));
  CHECK(shared->at("situation") == (first == 0 ? "all-to-second" : "all-to-first"));
}

}  // namespace
}  // namespace portreuse::testing
