// Experiment 09 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>
#include <unistd.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::vector<ExpectedStep> kLinuxOutcomes{
    // The TIME_WAIT carries the old listener's SO_REUSEPORT, the new socket sets it too.
    {"restart-with-reuseport-both", "bind", "ok"},
    // The old server did not set SO_REUSEPORT, so neither does its TIME_WAIT: refused.
    {"restart-with-reuseport-new-only", "bind", "EADDRINUSE"},
    // Two listeners of one user share 0.0.0.0:P.
    {"two-listeners-reuseport", "listen", "ok"},
};

// Only root can create a socket under another user; anyone else gets an honest skip.
const ExpectedStep kOtherUser{"reuseport-other-uid", "bind", "EADDRINUSE"};

TEST_CASE("09 reuseport: each step gives the Linux outcome") {
  const auto records = run_experiment_json("09");
  auto table = kLinuxOutcomes;
  std::vector<Record> checked = records;
  if (::geteuid() == 0) {
    table.push_back(kOtherUser);
    const auto* other = find_step(records, kOtherUser.step);
    REQUIRE(other != nullptr);
    CHECK(other->at("listener_uid") == "0");
    CHECK(other->at("other_uid") == "65534");
  } else {
    const auto* other = find_step(records, kOtherUser.step);
    REQUIRE(other != nullptr);
    CHECK(other->at("outcome") == "skipped");
    std::erase_if(checked, [](const Record& record) { return record.at("step") == kOtherUser.step; });
  }
  check_steps(checked, table);

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
