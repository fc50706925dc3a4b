// Experiment 13 against the live kernel, inside a private network namespace.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // Five ports, each left in TIME_WAIT by a client that closed first: the sixth connect() fails.
    {"ephemeral-exhausted-connect", "connect", "EADDRNOTAVAIL"},
};

TEST_CASE("13 client-side: each step gives the Linux outcome") {
  const auto records = run_experiment_json("13");
  const auto* step = find_step(records, "ephemeral-exhausted-connect");
  REQUIRE(step != nullptr);
  if (step->at("outcome") == "skipped") {
    // Namespaces are not permitted here: the program must say why instead of guessing.
    WARN_MESSAGE(false, "13 skipped: " << step->at("why"));
    CHECK(!step->at("why").empty());
    return;
  }
  check_steps(records, kLinuxOutcomes);
  CHECK(step->at("situation") == "all-in-time-wait");
  CHECK(step->at("tcp_tw_reuse") == "0");
  CHECK(step->at("connections_before_failure") == step->at("range_size"));
  CHECK(step->at("time_wait_sockets") == step->at("range_size"));
}

}  // namespace
}  // namespace portreuse::testing
