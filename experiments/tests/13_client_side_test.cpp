// Experiment 13 against the live kernel, inside a private network namespace.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("13 client-side: each step gives the Linux outcome") {
  const auto records = run_experiment_json("13");
  check_steps(records, "13");
  const auto* step = find_step(records, "ephemeral-exhausted-connect");
  REQUIRE(step != nullptr);
  if (step->at("outcome") == "skipped") {
    // Namespaces are not permitted here: the program must say why instead of guessing.
    WARN_MESSAGE(false, "13 skipped: " << step->at("why"));
    CHECK(step->at("why").find("unshare") != std::string::npos);
    return;
  }
  CHECK(step->at("situation") == "all-in-time-wait");
  CHECK(step->at("tcp_tw_reuse") == "0");
  // Evidence, not 0 == 0: connections were made, and each left a TIME_WAIT row in the table.
  CHECK(std::stoi(step->at("connections_before_failure")) > 0);
  CHECK(step->at("connections_before_failure") == step->at("range_size"));
  CHECK(step->at("time_wait_sockets") == step->at("range_size"));
  // The namespace was made with calls the step shows.
  CHECK(step->at("calls").find("unshare CLONE_NEWUSER | CLONE_NEWNET -> ok") != std::string::npos);
  CHECK(step->at("calls").find("TIME-WAIT") != std::string::npos);
}

}  // namespace
}  // namespace portreuse::testing
