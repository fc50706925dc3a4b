// The check of one run of experiment 17, shared by its default test and its long test.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test_support.hpp"

namespace portreuse::testing {
namespace zero_downtime {

inline const std::vector<std::string> kStrategies{"stop-start",        "stop-start-reuseaddr", "reuseport-overlap",
                                                  "reuseport-migrate", "listen-fds-exec",      "scm-rights-handover"};
inline const std::vector<std::string> kZeroLoss{"reuseport-migrate", "listen-fds-exec", "scm-rights-handover"};

inline int number(const Record& record, const char* key) {
  return std::stoi(record.at(key));
}

}  // namespace zero_downtime

// One run (the long test makes 20 in a row): the Linux outcome of each step, the ordering by
// refused connections (stop-start refuses more than stop-start-reuseaddr, which refuses some; the overlaps and
// handovers none), and no loss at all where a handover keeps the listening socket. False when namespaces are not
// available here (the steps say so and are skipped).
inline bool check_zero_downtime_run() {
  using namespace zero_downtime;
  const auto records = run_experiment_json("17");
  check_steps(records, "17");
  const auto* first = find_step(records, "stop-start");
  REQUIRE(first != nullptr);
  if (first->at("outcome") == "skipped") {
    WARN_MESSAGE(false, "17 skipped: " << first->at("why"));
    CHECK(first->at("why").find("unshare") != std::string::npos);
    return false;
  }
  for (const auto& id : kStrategies) {
    CAPTURE(id);
    const auto* step = find_step(records, id);
    REQUIRE(step != nullptr);
    if (step->at("outcome") == "skipped") continue;  // tcp_migrate_req before Linux 5.14
    // The counts add up to the load, and every step served requests before and after.
    CHECK(number(*step, "refused") + number(*step, "reset") + number(*step, "timed_out") + number(*step, "other") +
              number(*step, "served") ==
          number(*step, "requests"));
    CHECK(number(*step, "served") > 0);
    CHECK(number(*step, "timed_out") == 0);
  }
  const auto refused = [&](const std::string& id) { return number(*find_step(records, id), "refused"); };
  CHECK(refused("stop-start") > refused("stop-start-reuseaddr"));
  CHECK(refused("stop-start-reuseaddr") > 0);
  CHECK(refused("reuseport-overlap") == 0);
  CHECK(number(*find_step(records, "reuseport-overlap"), "reset") > 0);
  CHECK(find_step(records, "stop-start")->at("new_server_bind") == "EADDRINUSE");
  CHECK(find_step(records, "stop-start-reuseaddr")->at("new_server_bind") == "ok");
  for (const auto& id : kZeroLoss) {
    CAPTURE(id);
    const auto* step = find_step(records, id);
    if (step->at("outcome") == "skipped") continue;
    CHECK(step->at("verdict") == "holds");
    CHECK(step->at("said") == "reference");  // engineers' claims (issue trackers), not the articles'
    CHECK(number(*step, "served") == number(*step, "requests"));
  }
  return true;
}

}  // namespace portreuse::testing
