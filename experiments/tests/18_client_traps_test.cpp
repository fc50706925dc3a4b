// Experiment 18 against the live kernel, inside private network namespaces.
#include <doctest/doctest.h>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

TEST_CASE("18 client-traps: each step gives the Linux outcome") {
  const auto records = run_experiment_json("18");
  check_steps(records, "18");
}

}  // namespace
}  // namespace portreuse::testing
