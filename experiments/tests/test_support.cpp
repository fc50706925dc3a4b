#include "test_support.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "portreuse/json.hpp"

namespace portreuse::testing {

std::vector<ManifestEntry> read_manifest() {
  std::ifstream file(std::string(PORTREUSE_SOURCE_DIR) + "/experiments/manifest.txt");
  std::vector<ManifestEntry> entries;
  std::string line;
  while (std::getline(file, line)) {
    if (line.size() < 3 || line[0] < '0' || line[0] > '9') continue;
    std::istringstream fields(line);
    ManifestEntry entry;
    fields >> entry.number >> entry.slug;
    std::getline(fields >> std::ws, entry.title);
    entries.push_back(entry);
  }
  return entries;
}

std::string program_path(const std::string& number) {
  for (const auto& entry : read_manifest()) {
    if (entry.number == number) return std::string(PORTREUSE_BIN_DIR) + "/" + entry.number + "-" + entry.slug;
  }
  FAIL("experiment " << number << " is not in the manifest");
  return {};
}

std::string tool_path(const std::string& name) {
  return std::string(PORTREUSE_BIN_DIR) + "/" + name;
}

CommandResult run_program(const std::vector<std::string>& argv, Millis deadline) {
  auto result = run_command(argv, deadline);
  REQUIRE_MESSAGE(result.has_value(), "could not start " << argv.front());
  CHECK_MESSAGE(!result->timed_out, argv.front() << " did not finish in time");
  return std::move(result.value());
}

std::vector<Record> run_experiment_json(const std::string& number, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{program_path(number), "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto result = run_program(argv);
  INFO("stderr: " << result.err);
  REQUIRE_MESSAGE(result.status.exited, "ended by signal " << result.status.signal);
  REQUIRE(result.status.code == 0);
  std::vector<Record> records;
  std::istringstream lines(result.out);
  std::string line;
  while (std::getline(lines, line)) {
    auto record = parse_flat_json(line);
    REQUIRE_MESSAGE(record.has_value(), "not a JSON object: " << line);
    records.push_back(*record);
  }
  return records;
}

const Record* find_step(const std::vector<Record>& records, const std::string& step) {
  for (const auto& record : records) {
    const auto found = record.find("step");
    if (found != record.end() && found->second == step) return &record;
  }
  return nullptr;
}

void check_steps(const std::vector<Record>& records, const std::vector<ExpectedStep>& table) {
  CHECK(records.size() == table.size());
  for (const auto& row : table) {
    CAPTURE(row.step);
    const Record* record = find_step(records, row.step);
    REQUIRE_MESSAGE(record != nullptr, "the program did not report step " << row.step);
    CHECK(record->at("call") == row.call);
    CHECK(record->at("outcome") == row.outcome);
    // The program's own expectation must agree with this table, or one of them is wrong.
    CHECK(record->at("expected") == row.outcome);
    for (const char* key : {"experiment", "claim", "source", "verdict", "explanation", "claimed"}) {
      CHECK_MESSAGE(record->count(key) == 1, "missing " << key);
    }
  }
}

}  // namespace portreuse::testing
