// Experiment 18 against the live kernel, inside private network namespaces: the outcomes, and
// the counts behind them.
#include <doctest/doctest.h>

#include <string>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

int number(const Record& record, const std::string& key) {
  REQUIRE_MESSAGE(record.count(key) == 1, "missing " << key);
  return std::stoi(record.at(key));
}

// A step that could not make its namespace says why, naming unshare(); nothing else to check.
bool skipped_for_namespaces(const Record& step) {
  if (step.at("outcome") != "skipped") return false;
  WARN_MESSAGE(false, "18 " << step.at("step") << " skipped: " << step.at("why"));
  CHECK(step.at("why").find("unshare") != std::string::npos);
  return true;
}

TEST_CASE("18 client-traps: each step gives the Linux outcome from counts made in the run") {
  const auto records = run_experiment_json("18");
  check_steps(records, "18");

  const auto* bind_first = find_step(records, "bind-before-connect");
  REQUIRE(bind_first != nullptr);
  if (!skipped_for_namespaces(*bind_first)) {
    CHECK(bind_first->at("verdict") == "inference-holds");
    CHECK(bind_first->at("situation") == "ran-out-sooner");
    const int range = number(*bind_first, "range_size");
    // connect() alone: every port once per server; bind(0) first: every port once.
    CHECK(number(*bind_first, "connections_connect_only") == 2 * range);
    CHECK(number(*bind_first, "local_ports_connect_only") == range);
    CHECK(number(*bind_first, "connections_bind_first") == range);
    CHECK(number(*bind_first, "local_ports_bind_first") == range);
    CHECK(bind_first->at("calls").find("bind 127.0.0.1:0 -> EADDRINUSE") != std::string::npos);
  }

  const auto* no_port = find_step(records, "bind-address-no-port");
  REQUIRE(no_port != nullptr);
  if (!skipped_for_namespaces(*no_port)) {
    CHECK(no_port->at("verdict") == "holds");
    CHECK(no_port->at("situation") == "shared");
    const int range = number(*no_port, "range_size");
    CHECK(number(*no_port, "connections_no_port") == 2 * range);
    CHECK(number(*no_port, "local_ports_no_port") == range);
  }

  const auto* own_range = find_step(records, "local-port-range");
  REQUIRE(own_range != nullptr);
  if (own_range->at("outcome") == "skipped") {
    // Namespaces, or a kernel before 6.3: either way the reason names the call that said so.
    WARN_MESSAGE(false, "18 local-port-range skipped: " << own_range->at("why"));
    const auto& why = own_range->at("why");
    CHECK((why.find("unshare") != std::string::npos || why.find("ENOPROTOOPT") != std::string::npos));
  } else {
    CHECK(own_range->at("verdict") == "holds");
    CHECK(own_range->at("situation") == "inside-own-range");
    CHECK(number(*own_range, "connections_own_range") == 2);
    CHECK(own_range->at("without_option_connected") == "true");
    // Both ports from the socket's own range, which the step reports as "low high".
    const auto& own = own_range->at("own_range");
    const auto low = own.substr(0, own.find(' '));
    const auto high = own.substr(own.find(' ') + 1);
    const auto& used = own_range->at("local_ports_own_range");
    CHECK((used == "[" + low + "," + high + "]" || used == "[" + high + "," + low + "]"));
    const int other = number(*own_range, "without_option_port");
    CHECK((other < std::stoi(low) || other > std::stoi(high)));
  }

  const auto* autobind_0 = find_step(records, "autobind-reuse-0");
  REQUIRE(autobind_0 != nullptr);
  if (!skipped_for_namespaces(*autobind_0)) {
    CHECK(autobind_0->at("verdict") == "holds");
    CHECK(autobind_0->at("ip_autobind_reuse") == "0");
    CHECK(autobind_0->at("second_client_port") == "null");
  }
  const auto* autobind_1 = find_step(records, "autobind-reuse-1");
  REQUIRE(autobind_1 != nullptr);
  if (!skipped_for_namespaces(*autobind_1)) {
    CHECK(autobind_1->at("verdict") == "holds");
    CHECK(autobind_1->at("situation") == "shared");
    CHECK(autobind_1->at("ip_autobind_reuse") == "1");
    // The one port of the range, held by both clients, each connected to its own server.
    CHECK(autobind_1->at("local_port_range") ==
          autobind_1->at("first_client_port") + " " + autobind_1->at("first_client_port"));
    CHECK(autobind_1->at("second_client_port") == autobind_1->at("first_client_port"));
  }

  // No namespace needed: what the kernel read back, not what the code meant.
  const auto* or_ed = find_step(records, "or-ed-option-name");
  REQUIRE(or_ed != nullptr);
  CHECK(or_ed->at("verdict") == "holds");
  CHECK(or_ed->at("option_name") == "15");
  CHECK(or_ed->at("so_reuseaddr") == "0");
  CHECK(or_ed->at("so_reuseport") == "1");
  CHECK(or_ed->at("calls").find("reads back SO_REUSEADDR=0, SO_REUSEPORT=1") != std::string::npos);
}

}  // namespace
}  // namespace portreuse::testing
