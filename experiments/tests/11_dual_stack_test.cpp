// Experiment 11 against the live kernel: one row per step, with the outcome Linux gives.
#include <doctest/doctest.h>

#include "portreuse/net.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// The same test the program makes: an IPv6 socket on ::1.
bool ipv6_available() {
  auto probe = open_socket(AF_INET6);
  return probe && !bind_to(probe->get(), *Endpoint::parse("::1", 0));
}

TEST_CASE("11 dual-stack: each step gives the Linux outcome") {
  const auto records = run_experiment_json("11");
  if (!ipv6_available()) {
    // An honest skip, with the reason, for every step.
    CHECK(records.size() == expected_rows("11").size());
    for (const auto& record : records) {
      CHECK(record.at("outcome") == "skipped");
      CHECK(!record.at("why").empty());
    }
    return;
  }
  check_steps(records, "11");
  for (const auto& record : records) {
    CAPTURE(record.at("step"));
    REQUIRE(record.count("bindv6only") == 1);
    CHECK((record.at("bindv6only") == "0" || record.at("bindv6only") == "1"));
  }
  const auto* dual = find_step(records, "dual-stack-v6only-0-then-v4");
  REQUIRE(dual != nullptr);
  CHECK(dual->at("situation") == "dual-stack");
  CHECK(dual->at("ipv4_client_before_second").find("::ffff:127.0.0.1") != std::string::npos);
  const auto* separate = find_step(records, "dual-stack-v6only-1-then-v4");
  REQUIRE(separate != nullptr);
  CHECK(separate->at("situation") == "v6-only");
  CHECK(separate->at("ipv4_client_after_second").find("IPv4 server") != std::string::npos);
  const auto* reverse = find_step(records, "v4-then-dual-stack");
  REQUIRE(reverse != nullptr);
  CHECK(reverse->at("situation") == "dual-stack");
}

}  // namespace
}  // namespace portreuse::testing
