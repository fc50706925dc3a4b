// Experiment 16 against the live kernel, each step inside a private network namespace.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("16 time-wait-accepts: each step gives the Linux outcome") {
  const auto records = run_experiment_json("16");
  const auto* first = find_step(records, "syn-reopens-time-wait");
  REQUIRE(first != nullptr);
  if (first->at("outcome") == "skipped") {
    // Namespaces are not permitted here: the program must say why instead of guessing.
    WARN_MESSAGE(false, "16 skipped: " << first->at("why"));
    CHECK(first->at("why").find("unshare") != std::string::npos);
    return;
  }
  check_steps(records, "16");
  // Evidence, not 0 == 0: the TIME_WAIT row was there before the segment and gone (or kept) after.
  CHECK(first->at("situation") == "time-wait-reopened");
  CHECK(first->at("time_wait_rows_before") == "1");
  CHECK(first->at("time_wait_rows_after") == "0");

  const auto* reuse = find_step(records, "client-tw-reuse");
  REQUIRE(reuse != nullptr);
  CHECK(reuse->at("situation") == "cells-as-documented");

  const auto* ended = find_step(records, "rst-ends-time-wait");
  REQUIRE(ended != nullptr);
  CHECK(ended->at("situation") == "time-wait-ended");
  CHECK(ended->at("bind_before") == "EADDRINUSE");
  CHECK(ended->at("calls").find("sendto 127.0.0.1:") != std::string::npos);
  CHECK(ended->at("calls").find("RST from") != std::string::npos);

  const auto* kept = find_step(records, "rst-ignored-with-rfc1337");
  REQUIRE(kept != nullptr);
  CHECK(kept->at("situation") == "time-wait-kept");
  CHECK(kept->at("time_wait_rows_after") == "1");

  const auto* fin = find_step(records, "fin-restarts-timer");
  REQUIRE(fin != nullptr);
  CHECK(fin->at("situation") == "timer-restarted");
  CHECK(std::stol(fin->at("timer_ms_after")) > std::stol(fin->at("timer_ms_before")));
  CHECK(std::stol(fin->at("timer_ms_after")) >= 59000);
}

TEST_CASE("16 time-wait-accepts: the ladder shows the SYN and the RST and the FIN") {
  const auto records = run_experiment_json("16", {"--ladder"});
  const auto* first = find_step(records, "syn-reopens-time-wait");
  REQUIRE(first != nullptr);
  if (first->count("ladder_missing") > 0 && first->at("ladder_missing") != "null") {
    WARN_MESSAGE(false, "no ladder: " << first->at("ladder_missing"));
    return;
  }
  if (first->at("outcome") == "skipped") return;
  check_steps(records, "16");
  // The second SYN of the same address pair: two client SYNs in one step.
  const auto& syns = first->at("segments");
  const auto second = syns.find("client SYN", syns.find("client SYN") + 1);
  CHECK(second != std::string::npos);
  CHECK(find_step(records, "rst-ends-time-wait")->at("segments").find("client RST") != std::string::npos);
  CHECK(find_step(records, "fin-restarts-timer")->at("segments").find("client FIN ACK") != std::string::npos);
}

}  // namespace
}  // namespace portreuse::testing
