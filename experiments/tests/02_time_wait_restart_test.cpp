// Experiment 02 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("02 time-wait-restart: each step gives the Linux outcome") {
  const auto records = run_experiment_json("02");
  check_steps(records, "02");
  const auto* restart = find_step(records, "restart-after-server-close");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("situation") == "time-wait");
  CHECK(restart->at("time_wait_side") == "server");
  // A real SIGINT ended the old server: the calls the step made say so.
  CHECK(restart->at("calls").find("ended by SIGINT") != std::string::npos);
  CHECK(restart->at("verdict") == "holds");
  // The TIME_WAIT keeps the server's own port, and its timer is Linux's TCP_TIMEWAIT_LEN (60 s)
  // minus the moments the step took: nowhere near the articles' 2 to 4 minutes.
  CHECK(restart->at("time_wait_holds_port") == restart->at("port"));
  const double seconds_left = std::stod(restart->at("time_wait_seconds_left"));
  CHECK(seconds_left > 50.0);
  CHECK(seconds_left <= 60.0);
}

}  // namespace
}  // namespace portreuse::testing
