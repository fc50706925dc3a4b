// Helpers for tests that run the real programs and read what they report.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "portreuse/child.hpp"

namespace portreuse::testing {

using Record = std::map<std::string, std::string>;

struct ManifestEntry {
  std::string number;
  std::string slug;
  std::string title;
};

std::vector<ManifestEntry> read_manifest();
std::string program_path(const std::string& number);  // build/<preset>/bin/NN-slug
std::string tool_path(const std::string& name);

CommandResult run_program(const std::vector<std::string>& argv, Millis deadline = Millis(15000));

// Runs the experiment with --json (plus extra arguments) and returns one record per step.
// Fails the test if the program did not exit 0 or printed something that is not JSON.
std::vector<Record> run_experiment_json(const std::string& number, const std::vector<std::string>& extra = {});

// One row of an experiment's table of expected Linux outcomes.
struct ExpectedStep {
  const char* step;
  const char* call;
  const char* outcome;  // "ok" or the exact errno name
};

// Asserts that every row's step ran with exactly that call and outcome, and that the program
// reported no step the table does not list.
void check_steps(const std::vector<Record>& records, const std::vector<ExpectedStep>& table);

const Record* find_step(const std::vector<Record>& records, const std::string& step);

}  // namespace portreuse::testing
