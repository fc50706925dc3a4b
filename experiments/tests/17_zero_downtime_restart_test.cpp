// Experiment 17 against the live kernel, inside private network namespaces: the restart
// strategies ordered by refused connections, and the handovers losing nothing.
#include <doctest/doctest.h>

#include "17_zero_downtime_restart_check.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("17 zero-downtime-restart: each strategy's losses as Linux gives them") {
  check_zero_downtime_run();
}

}  // namespace
}  // namespace portreuse::testing
