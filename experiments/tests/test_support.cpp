#include "test_support.hpp"

#include <dirent.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/socket_table.hpp"

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

std::string unique_run_tag() {
  static std::atomic<int> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(now);
}

std::vector<pid_t> processes_tagged(const std::string& tag) {
  const std::string wanted = "PORTREUSE_RUN_TAG=" + tag;
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (const dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream environ(std::string("/proc/") + entry->d_name + "/environ");
    const std::string text{std::istreambuf_iterator<char>(environ), std::istreambuf_iterator<char>()};
    std::istringstream variables(text);
    std::string variable;
    bool zombie = false;
    while (std::getline(variables, variable, '\0')) {
      if (variable != wanted) continue;
      std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
      const std::string stat_text{std::istreambuf_iterator<char>(stat), std::istreambuf_iterator<char>()};
      const auto close_paren = stat_text.rfind(')');
      zombie =
          close_paren != std::string::npos && close_paren + 2 < stat_text.size() && stat_text[close_paren + 2] == 'Z';
      if (!zombie) found.push_back(static_cast<pid_t>(std::stol(entry->d_name)));
    }
  }
  ::closedir(proc);
  return found;
}

std::vector<std::string> leftover_listeners(const std::vector<std::uint16_t>& ports, const std::string& tag) {
  // Ours: owned by a tagged process, or owned by nobody we can find. A listener that another test
  // opened and closed meanwhile (ports are reused) is gone on a second look, so only what is still
  // there then counts.
  const auto suspects = [&] {
    std::vector<std::pair<std::string, unsigned long>> found;
    const auto tagged = processes_tagged(tag);
    for (const auto port : ports) {
      auto holders = sockets_holding(port);
      if (!holders) continue;
      for (const auto& holder : *holders) {
        if (!holder.is(TcpState::listen)) continue;
        const auto owner = find_socket_owner(holder.inode);
        const bool ours = !owner || std::find(tagged.begin(), tagged.end(), owner->pid) != tagged.end();
        if (ours) {
          found.emplace_back(holder.describe() + (owner ? " (pid " + std::to_string(owner->pid) + ")" : ""),
                             holder.inode);
        }
      }
    }
    return found;
  };
  const auto first_look = suspects();
  if (first_look.empty()) return {};
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::vector<std::string> leftovers;
  for (const auto& suspect : suspects()) {
    const bool seen_before = std::any_of(first_look.begin(), first_look.end(),
                                         [&](const auto& earlier) { return earlier.second == suspect.second; });
    if (seen_before) leftovers.push_back(suspect.first);
  }
  return leftovers;
}

std::vector<std::uint16_t> ports_in(const std::string& json_lines) {
  std::vector<std::uint16_t> ports;
  std::istringstream lines(json_lines);
  std::string line;
  while (std::getline(lines, line)) {
    const auto record = parse_flat_json(line);
    if (!record || record->count("port") == 0) continue;
    if (const auto port = parse_port(record->at("port"))) ports.push_back(*port);
  }
  return ports;
}

void check_nothing_left(const std::string& tag, const std::vector<std::uint16_t>& ports) {
  // A process that was just SIGKILLed can take a moment to disappear from /proc.
  auto alive = processes_tagged(tag);
  for (int attempt = 0; attempt < 100 && !alive.empty(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    alive = processes_tagged(tag);
  }
  std::string pids;
  for (const auto pid : alive) pids += " " + std::to_string(pid);
  CHECK_MESSAGE(alive.empty(), "processes of the run still alive:" << pids);
  const auto listeners = leftover_listeners(ports, tag);
  std::string listed;
  for (const auto& line : listeners) listed += "\n  " + line;
  CHECK_MESSAGE(listeners.empty(), "sockets of the run still listening:" << listed);
}

CommandResult run_program(const std::vector<std::string>& argv, Millis deadline, const std::string& input) {
  const auto tag = unique_run_tag();
  std::vector<std::string> tagged{"/usr/bin/env", "PORTREUSE_RUN_TAG=" + tag};
  tagged.insert(tagged.end(), argv.begin(), argv.end());
  auto result = run_command(tagged, deadline, input);
  REQUIRE_MESSAGE(result.has_value(), "could not start " << argv.front());
  CHECK_MESSAGE(!result->timed_out, argv.front() << " did not finish in time");
  check_nothing_left(tag, ports_in(result->out));
  return std::move(result.value());
}

std::vector<Record> run_experiment_json(const std::string& number, const std::vector<std::string>& extra,
                                        Millis deadline) {
  std::vector<std::string> argv{program_path(number), "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto result = run_program(argv, deadline);
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

std::vector<ExpectedRow> expected_rows(const std::string& number) {
  std::ifstream file(std::string(PORTREUSE_SOURCE_DIR) + "/experiments/expected_outcomes.txt");
  REQUIRE_MESSAGE(file.is_open(), "cannot read experiments/expected_outcomes.txt");
  std::vector<ExpectedRow> rows;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string row_number;
    ExpectedRow row;
    if (!(fields >> row_number >> row.step >> row.call >> row.outcome) || row_number != number) continue;
    rows.push_back(row);
  }
  return rows;
}

void check_steps(const std::vector<Record>& records, const std::string& number) {
  const auto rows = expected_rows(number);
  REQUIRE_MESSAGE(!rows.empty(), "experiments/expected_outcomes.txt has no row for experiment " << number);
  std::size_t ran = 0;
  for (const auto& row : rows) {
    CAPTURE(row.step);
    const Record* record = find_step(records, row.step);
    if (record == nullptr) continue;  // a long-running step, not asked for in this run
    ++ran;
    CHECK(record->at("call") == row.call);
    if (record->at("outcome") == "skipped") continue;
    CHECK(record->at("outcome") == row.outcome);
    CHECK(record->at("expected") == row.outcome);
    for (const char* key : {"experiment", "claim", "source", "verdict", "explanation", "claimed", "calls"}) {
      CHECK_MESSAGE(record->count(key) == 1, "missing " << key);
    }
  }
  // Every step the program reported is in the table.
  CHECK(ran == records.size());
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
