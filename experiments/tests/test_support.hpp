// Helpers for tests that run the real programs and read what they report.
#pragma once

#include <sys/types.h>

#include <cstdint>
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

// Runs a program to completion with a unique PORTREUSE_RUN_TAG in its environment (inherited by
// every process it forks), then checks that none of them is still alive and that no socket of
// theirs still listens on the ports the run reported.
// The deadline only catches a hang: a loaded shared machine can take many times an idle one's time.
CommandResult run_program(const std::vector<std::string>& argv, Millis deadline = Millis(60000),
                          const std::string& input = {});

// A tag no other run shares; put it in a program's environment as PORTREUSE_RUN_TAG=<tag>.
std::string unique_run_tag();
// Processes whose environment carries the tag: leftovers once the run is over.
std::vector<pid_t> processes_tagged(const std::string& tag);
// "LISTEN 0.0.0.0:40123 (pid 42)" for every listening socket on these ports owned by a process
// with the tag, or whose owner cannot be found.
std::vector<std::string> leftover_listeners(const std::vector<std::uint16_t>& ports, const std::string& tag);
// The "port" fields of JSON Lines output.
std::vector<std::uint16_t> ports_in(const std::string& json_lines);
// Fails the test when the run left a process or a listener behind.
void check_nothing_left(const std::string& tag, const std::vector<std::uint16_t>& ports);

// Runs the experiment with --json (plus extra arguments) and returns one record per step.
// Fails the test if the program did not exit 0 or printed something that is not JSON.
std::vector<Record> run_experiment_json(const std::string& number, const std::vector<std::string>& extra = {},
                                        Millis deadline = Millis(60000));

struct ExpectedRow {
  std::string step;
  std::string call;
  std::string outcome;  // "ok" or the exact errno name
};

// One row of an experiment's table of expected Linux outcomes.
struct ExpectedStep {
  const char* step;
  const char* call;
  const char* outcome;  // "ok" or the exact errno name
};

// Asserts that every row's step ran with exactly that call and outcome, and that the program
// reported no step the table does not list.
void check_steps(const std::vector<Record>& records, const std::vector<ExpectedStep>& table);

// The rows of experiments/expected_outcomes.txt for one experiment: the one table of expected
// Linux outcomes, which the programs print as "expected" too.
std::vector<ExpectedRow> expected_rows(const std::string& number);
// Asserts that every step of the experiment in that table ran with exactly that call and outcome
// (skipped steps excepted, when `allow_skipped`), and that the program reported no other step.
void check_steps(const std::vector<Record>& records, const std::string& number);

const Record* find_step(const std::vector<Record>& records, const std::string& step);

}  // namespace portreuse::testing
