// Experiment 10 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // A reset leaves no TIME_WAIT: the restart binds at once.
    {"restart-after-linger-abort", "bind", "ok"},
    // The client's reading ends with the reset, not with an end of stream.
    {"linger-abort-peer-read", "recv", "ECONNRESET"},
};

TEST_CASE("10 abortive-close: each step gives the Linux outcome") {
  const auto records = run_experiment_json("10");
  check_steps(records, kLinuxOutcomes);

  const auto* restart = find_step(records, "restart-after-linger-abort");
  REQUIRE(restart != nullptr);
  CHECK(restart->at("situation") == "clean");
  CHECK(restart->at("time_wait_side") == "none");

  // What send() had taken but the network had not delivered is gone with the reset.
  const auto* read = find_step(records, "linger-abort-peer-read");
  REQUIRE(read != nullptr);
  CHECK(read->at("situation") == "partly-delivered");
  const auto sent = std::stoll(read->at("bytes_sent_by_server"));
  const auto got = std::stoll(read->at("bytes_read_by_client"));
  CHECK(got < sent);
  CHECK(std::stoll(read->at("bytes_lost")) == sent - got);
  CHECK(read->at("sockets_after_reset") == "[]");
}

}  // namespace
}  // namespace portreuse::testing
