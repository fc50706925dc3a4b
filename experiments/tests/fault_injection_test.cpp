// The fault-injection test (CTest label "robustness"): every experiment runs with --json while one
// libc call is made to fail (faults/fault_preload.cpp, LD_PRELOAD into the program only), under
// tight descriptor limits (ulimit -n) and under a tight process limit (RLIMIT_NPROC). Whatever
// breaks, every step record must keep the suite's first rules:
//   (a) a step whose calls show the failure got no verdict: it is "could-not-run", and its "why"
//       names the failed call and the errno (by name, or by number when the table has none);
//   (b) every "could-not-run" names a call and an errno that really failed: its calls list them;
//   (c) the program ends in time, and leaves no process and no listener behind;
//   (d) no fallback errno: the faulted call shows the injected errno, never another.
// A record that gives a verdict must carry its calls, or none of this can be checked.
//
// Run them:   ctest --preset robustness -R 'fault|limit'
// Only some experiments:   PORTREUSE_FAULT_ONLY=02,05 build/default/bin/portreuse_robustness_tests -tc='*every*'
// Each run is one row of the table printed at the end (and appended to $PORTREUSE_FAULT_REPORT).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "portreuse/errors.hpp"
#include "portreuse/json.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// ---- The faults: one row each --------------------------------------------------------------

struct FaultRow {
  const char* spec;  // PORTREUSE_FAULT: CALL:ERRNO[:after=N][:in=child][:skip-port-0]
  const char* call;  // the call's name in a step's "calls" (the Trace names pipe2 "pipe")
  int error;         // the injected errno
  bool every_call;   // no filter: every such call fails, so none may show another outcome
};

// The first accept, bind(:0), connect of a run are the runner's loopback check (before any step);
// each step's port comes from a bind to port 0. after=1 and skip-port-0 let those through, so
// that the fault reaches the scenario's own calls; in=child strikes only in the server processes.
constexpr FaultRow kFaults[] = {
    // The server cannot take the connection: no "answered and closed first" may follow.
    {"accept:EMFILE:after=1", "accept", EMFILE, false},
    {"accept:EMFILE:in=child", "accept", EMFILE, false},
    // No child process: no "forked child -1", no verdict about a daemon's child.
    {"fork:EAGAIN", "fork", EAGAIN, true},
    {"fork:EAGAIN:after=1", "fork", EAGAIN, false},
    // An errno no name in the table has: it must travel and print as its number, never as EIO.
    {"bind:200:skip-port-0", "bind", 200, false},
    // The first server binds; the next bind (often the step's answer) gets errno 200.
    {"bind:200:skip-port-0:after=1", "bind", 200, false},
    // A real errno missing from the name table (30, EROFS): once parsed back as EIO.
    {"bind:EROFS:skip-port-0", "bind", EROFS, false},
    // The loopback check's connect goes through, every later one is refused; then the first two.
    {"connect:ECONNREFUSED:after=1", "connect", ECONNREFUSED, false},
    {"connect:ECONNREFUSED:after=2", "connect", ECONNREFUSED, false},
    // The first two sockets of the run are made (the loopback check's), every later one fails.
    {"socket:EMFILE:after=2", "socket", EMFILE, false},
    {"socket:EMFILE:in=child", "socket", EMFILE, false},
    // The lab's report pipe cannot be made: no child can report.
    {"pipe2:EMFILE", "pipe", EMFILE, true},
    // SO_REUSEADDR (or any option) refused: no verdict about the option may follow.
    {"setsockopt:ENOPROTOOPT", "setsockopt", ENOPROTOOPT, true},
    // A reset instead of the data or the end of stream: in the server, then everywhere.
    {"recv:ECONNRESET:in=child", "recv", ECONNRESET, false},
    {"recv:ECONNRESET", "recv", ECONNRESET, true},
};

// The limits are set by prlimit(1), which then execs the program: `ulimit -n N`, `ulimit -u N`.
constexpr const char* kPrlimit = "/usr/bin/prlimit";
constexpr int kDescriptorLimits[] = {4, 5, 6, 8, 10, 12, 14, 16};
constexpr int kProcessLimits[] = {1, 2, 3};

// ---- Reading what a program reported --------------------------------------------------------

// The strings of a JSON array of strings, as the runner writes "calls"; nullopt when it is not one.
std::optional<std::vector<std::string>> string_array(const std::string& json) {
  std::vector<std::string> items;
  std::size_t at = 0;
  const auto skip_space = [&] {
    while (at < json.size() && (json[at] == ' ' || json[at] == '\n' || json[at] == '\t')) ++at;
  };
  skip_space();
  if (at >= json.size() || json[at] != '[') return std::nullopt;
  ++at;
  skip_space();
  if (at < json.size() && json[at] == ']') return items;
  for (;;) {
    skip_space();
    if (at >= json.size() || json[at] != '"') return std::nullopt;
    ++at;
    std::string item;
    while (at < json.size() && json[at] != '"') {
      if (json[at] == '\\' && at + 1 < json.size()) {
        const char escaped = json[++at];
        if (escaped == 'u' && at + 4 < json.size()) {
          item += static_cast<char>(std::stoi(json.substr(at + 1, 4), nullptr, 16));
          at += 4;
        } else {
          item += escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped;
        }
      } else {
        item += json[at];
      }
      ++at;
    }
    if (at >= json.size()) return std::nullopt;
    ++at;
    items.push_back(item);
    skip_space();
    if (at < json.size() && json[at] == ',') {
      ++at;
      continue;
    }
    if (at < json.size() && json[at] == ']') return items;
    return std::nullopt;
  }
}

// One entry of "calls": "server 4242: bind 0.0.0.0:40123 -> EADDRINUSE (Address already in use)".
struct ShownCall {
  std::string call;     // "bind"
  std::string outcome;  // "EADDRINUSE", "errno 200", or "" when it did not fail
};

std::optional<ShownCall> shown_call(const std::string& text) {
  const auto colon = text.find(": ");
  if (colon == std::string::npos) return std::nullopt;
  const auto rest = text.substr(colon + 2);
  ShownCall shown;
  shown.call = rest.substr(0, rest.find(' '));
  const auto arrow = rest.rfind(" -> ");
  if (arrow == std::string::npos) return shown;  // a note, or how a process ended
  auto outcome = rest.substr(arrow + 4);
  if (outcome.rfind("errno ", 0) == 0) {
    shown.outcome = outcome.substr(0, outcome.find(' ', 6));
  } else if (outcome.size() > 1 && outcome[0] == 'E' && outcome[1] >= 'A' && outcome[1] <= 'Z') {
    shown.outcome = outcome.substr(0, outcome.find(' '));
  }
  return shown;
}

// The errnos a text names: "EMFILE", "errno 200".
std::set<std::string> errnos_named(const std::string& text) {
  std::set<std::string> named;
  for (std::size_t at = 0; at < text.size(); ++at) {
    const bool word_start = at == 0 || !(std::isalnum(static_cast<unsigned char>(text[at - 1])) || text[at - 1] == '_');
    if (!word_start) continue;
    if (text.compare(at, 6, "errno ") == 0 && at + 6 < text.size() &&
        std::isdigit(static_cast<unsigned char>(text[at + 6]))) {
      auto end = at + 6;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      named.insert(text.substr(at, end - at));
      at = end;
      continue;
    }
    if (text[at] != 'E') continue;
    auto end = at + 1;
    while (end < text.size() &&
           ((text[end] >= 'A' && text[end] <= 'Z') || std::isdigit(static_cast<unsigned char>(text[end]))))
      ++end;
    const auto word = text.substr(at, end - at);
    if (word.size() >= 4 && parse_outcome(word)) named.insert(word);
    at = end;
  }
  return named;
}

bool names_word(const std::string& text, const std::string& word) {
  for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const bool starts = at == 0 || !std::isalnum(static_cast<unsigned char>(text[at - 1]));
    const auto after = at + word.size();
    const bool ends = after >= text.size() || !std::isalnum(static_cast<unsigned char>(text[after]));
    if (starts && ends) return true;
  }
  return false;
}

// ---- One condition, one run -----------------------------------------------------------------

// What a condition makes fail: a call (empty: any call) with an errno.
struct Condition {
  std::string label;  // "accept:EMFILE", "ulimit -n 8", "ulimit -u 2"
  std::string call;   // as the calls show it; empty: whichever call the limit hits
  int error = 0;
  bool every_call = false;
  std::vector<std::string> wrap;  // argv before the program
};

struct RunReport {
  std::vector<std::string> problems;  // one line each: which step, which rule
  int steps = 0;
  int could_not_run = 0;
  int verdicts = 0;
  int injected = -1;  // lines in the preload's log (-1: no log)
  long long took_ms = 0;
  bool not_started = false;  // the loader could not start the program (no descriptor for a library)
  bool shown = false;        // a record's calls show the condition's failure
};

std::string shown_errno(int error) {
  return errno_name(error);  // "EMFILE", or "errno 200": how the suite prints an errno, the one place
}

bool hits(const Condition& condition, const ShownCall& shown) {
  if (shown.outcome != shown_errno(condition.error)) return false;
  return condition.call.empty() || shown.call == condition.call;
}

// Each step's calls in a run without any fault: step -> calls.
using Baseline = std::map<std::string, std::vector<ShownCall>>;

std::vector<ShownCall> calls_of(const Record& record) {
  std::vector<ShownCall> calls;
  if (record.count("calls") == 0) return calls;
  if (auto texts = string_array(record.at("calls"))) {
    for (const auto& text : *texts) {
      if (auto shown = shown_call(text)) calls.push_back(*shown);
    }
  }
  return calls;
}

void check_record(const Condition& condition, const Record& record, RunReport& report, const Baseline& baseline = {}) {
  const std::string step = record.count("step") != 0 ? record.at("step") : std::string("?");
  const auto problem = [&](const std::string& text) { report.problems.push_back(step + ": " + text); };
  ++report.steps;
  const std::string outcome = record.count("outcome") != 0 ? record.at("outcome") : std::string();
  const bool could_not_run = outcome == "could-not-run";
  const bool skipped = outcome == "skipped";
  if (could_not_run) ++report.could_not_run;
  if (!could_not_run && !skipped) ++report.verdicts;

  std::vector<ShownCall> calls;
  if (record.count("calls") == 0) {
    // A skipped step says why this system cannot run it (not root, no IPv6); it teaches nothing.
    if (!skipped) {
      problem(could_not_run ? "(calls) could-not-run without calls: the failure it names cannot be checked"
                            : "(calls) a verdict without calls: its evidence cannot be checked");
    }
  } else if (auto texts = string_array(record.at("calls"))) {
    for (const auto& text : *texts) {
      if (auto shown = shown_call(text)) calls.push_back(*shown);
    }
  } else {
    problem("(calls) calls is not an array of strings");
  }

  // (a) the failure shows in the step: no verdict, and the why names it. A failure the step shows
  // without any fault too (10 reads ECONNRESET on purpose) is the lesson's, not the fault's: only
  // more such failures than in the run without faults count.
  const auto hit =
      std::find_if(calls.begin(), calls.end(), [&](const ShownCall& shown) { return hits(condition, shown); });
  const auto hits_here =
      std::count_if(calls.begin(), calls.end(), [&](const ShownCall& shown) { return hits(condition, shown); });
  long hits_without_fault = 0;
  if (const auto found = baseline.find(step); found != baseline.end()) {
    hits_without_fault = std::count_if(found->second.begin(), found->second.end(),
                                       [&](const ShownCall& shown) { return hits(condition, shown); });
  }
  if (hit != calls.end() && hits_here > hits_without_fault) {
    report.shown = true;
    const std::string failure = hit->call + " -> " + hit->outcome;
    const bool answered_by_it = record.count("call") != 0 && record.at("call") == hit->call && outcome == hit->outcome;
    if (!could_not_run && !answered_by_it) {
      problem("(a) " + failure + " in its calls, yet " + outcome +
              (record.count("verdict") != 0 ? " / " + record.at("verdict") : std::string()));
    }
    if (could_not_run) {
      const std::string why = record.count("why") != 0 ? record.at("why") : std::string();
      if (!names_word(why, hit->call) || !names_word(why, hit->outcome)) {
        problem("(a) could-not-run after " + failure + ", but its why does not name both: " + why);
      }
    }
  }

  // (b) a could-not-run names a call and an errno that failed in this step.
  if (could_not_run && record.count("calls") != 0) {
    const std::string why = record.count("why") != 0 ? record.at("why") : std::string();
    std::set<std::string> failed_errnos;
    bool names_failed_call = false;
    for (const auto& shown : calls) {
      if (shown.outcome.empty()) continue;
      failed_errnos.insert(shown.outcome);
      names_failed_call = names_failed_call || (names_word(why, shown.call) && names_word(why, shown.outcome));
    }
    if (!names_failed_call) problem("(b) could-not-run names no call that failed in its calls: " + why);
    for (const auto& named : errnos_named(why)) {
      if (failed_errnos.count(named) == 0) problem("(b) its why names " + named + ", which no call returned: " + why);
    }
  }

  // (d) the faulted call never shows another errno (or, when every call fails, success).
  if (!condition.call.empty() && condition.every_call) {
    for (const auto& shown : calls) {
      if (shown.call != condition.call || shown.outcome == shown_errno(condition.error)) continue;
      if (!shown.outcome.empty()) {
        problem("(d) " + shown.call + " -> " + shown.outcome + ", but the injected errno was " +
                shown_errno(condition.error));
      } else if (condition.every_call) {
        problem("(d) " + shown.call + " shown as succeeding while every " + shown.call + " failed");
      }
    }
  }
  if (condition.error == 200 || condition.error == EROFS) {
    for (const auto& [key, value] : record) {
      if (names_word(value, "EIO")) problem("(d) " + key + " names EIO, which no call returned");
    }
  }
}

std::string temporary_path() {
  char path_template[] = "/tmp/portreuse-fault-XXXXXX";
  const int fd = ::mkstemp(path_template);
  REQUIRE(fd >= 0);
  ::close(fd);
  return path_template;
}

int lines_in(const std::string& path) {
  std::ifstream file(path);
  int lines = 0;
  std::string line;
  while (std::getline(file, line)) ++lines;
  return lines;
}

// How many steps a run without --long reports: the step list of --help, less "(with --long)".
std::size_t steps_without_long(const std::string& number) {
  static std::map<std::string, std::size_t> known;
  if (const auto found = known.find(number); found != known.end()) return found->second;
  const auto help = run_command({program_path(number), "--help"}, Millis(5000));
  std::size_t steps = 0;
  if (help) {
    std::istringstream lines(help->out);
    std::string line;
    bool in_steps = false;
    while (std::getline(lines, line)) {
      if (line.rfind("Steps:", 0) == 0) {
        in_steps = true;
      } else if (in_steps && line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ') {
        if (line.find("(with --long)") == std::string::npos) ++steps;
      } else if (in_steps) {
        break;
      }
    }
  }
  known[number] = steps;
  return steps;
}

// Runs one experiment under one condition and checks (a) to (d) on what it reported.
RunReport run_under(const ManifestEntry& entry, const Condition& condition, const std::string& log_path = {},
                    const Baseline& baseline = {}) {
  RunReport report;
  const auto tag = unique_run_tag();
  std::vector<std::string> argv{"/usr/bin/env", "PORTREUSE_RUN_TAG=" + tag};
  argv.insert(argv.end(), condition.wrap.begin(), condition.wrap.end());
  argv.push_back(program_path(entry.number));
  argv.emplace_back("--json");
  const auto started = std::chrono::steady_clock::now();
  auto result = run_command(argv, Millis(30000));
  const auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  if (!result) {
    report.problems.push_back("(exit) could not start it: " + result.error().message());
    return report;
  }
  // (c) in time, and nothing left behind.
  if (result->timed_out) report.problems.push_back("(c) did not end within 30 s");
  if (took > Millis(20000)) report.problems.push_back("(c) took " + std::to_string(took.count()) + " ms");
  auto alive = processes_tagged(tag);
  for (int attempt = 0; attempt < 100 && !alive.empty(); ++attempt) {
    std::this_thread::sleep_for(Millis(10));
    alive = processes_tagged(tag);
  }
  if (!alive.empty()) report.problems.push_back("(c) " + std::to_string(alive.size()) + " processes left alive");
  for (const auto& listener : leftover_listeners(ports_in(result->out), tag)) {
    report.problems.push_back("(c) left listening: " + listener);
  }
  // Under the lowest descriptor limits the dynamic loader itself may find no descriptor for the
  // C++ runtime (how low depends on what the test's own caller left open): the program never
  // started, so there is nothing of it to check.
  const bool never_started = result->status.exited && result->status.code == 127 &&
                             result->err.find("error while loading shared libraries") != std::string::npos;
  report.not_started = never_started;
  if (!result->status.exited) {
    report.problems.push_back("(c) ended by " + signal_name(result->status.signal));
  } else if (result->status.code != 0 && result->status.code != 1 && !never_started) {
    report.problems.push_back("(exit) status " + std::to_string(result->status.code) + ": " +
                              result->err.substr(0, result->err.find('\n')));
  }

  std::istringstream lines(result->out);
  std::string line;
  bool any_could_not_run = false;
  while (std::getline(lines, line)) {
    auto record = parse_flat_json(line);
    if (!record) {
      report.problems.push_back("(exit) not a JSON object: " + line.substr(0, 60));
      continue;
    }
    check_record(condition, *record, report, baseline);
    any_could_not_run =
        any_could_not_run || (record->count("outcome") != 0 && record->at("outcome") == "could-not-run");
  }
  if (result->status.exited && result->status.code == 0 && any_could_not_run) {
    report.problems.push_back("(exit) status 0 although a step could not run");
  }
  // A program that stopped before its last step says why, with the errno that stopped it.
  const std::size_t steps_expected = steps_without_long(entry.number);
  if (static_cast<std::size_t>(report.steps) < steps_expected && result->status.exited && result->status.code == 1) {
    const auto named = errnos_named(result->err);
    if (named.count(shown_errno(condition.error)) == 0) {
      report.problems.push_back("(stop) stopped after " + std::to_string(report.steps) + " steps without naming " +
                                shown_errno(condition.error) + ": " + result->err.substr(0, result->err.find('\n')));
    }
  }
  if (!log_path.empty()) report.injected = lines_in(log_path);
  report.took_ms = took.count();
  // The rules' own problems first; a missing "calls" (every old-shape record) last.
  std::stable_partition(report.problems.begin(), report.problems.end(),
                        [](const std::string& problem) { return problem.find("(calls)") == std::string::npos; });
  return report;
}

// Every experiment of the manifest, or only those PORTREUSE_FAULT_ONLY names ("02,17").
std::vector<ManifestEntry> experiments_to_run() {
  const char* only = std::getenv("PORTREUSE_FAULT_ONLY");
  auto entries = read_manifest();
  if (only == nullptr || *only == '\0') return entries;
  const std::string wanted = std::string(",") + only + ",";
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [&](const ManifestEntry& entry) {
                                 return wanted.find("," + entry.number + ",") == std::string::npos;
                               }),
                entries.end());
  return entries;
}

// "(a) x2, (calls) x1": how many problems of each kind (the tag each problem line carries).
std::string kinds_of(const std::vector<std::string>& problems) {
  std::vector<std::pair<std::string, int>> kinds;
  for (const auto& line : problems) {
    const auto open = line.find('(');
    const auto close = line.find(')', open);
    const auto kind = open == std::string::npos || close == std::string::npos ? std::string("?")
                                                                              : line.substr(open, close - open + 1);
    auto found = std::find_if(kinds.begin(), kinds.end(), [&](const auto& known) { return known.first == kind; });
    if (found == kinds.end()) {
      kinds.emplace_back(kind, 1);
    } else {
      ++found->second;
    }
  }
  std::string text;
  for (const auto& [kind, count] : kinds) text += (text.empty() ? "" : ", ") + kind + " x" + std::to_string(count);
  return text.empty() ? "ok" : text;
}

// The experiment's steps and their calls, run once without any fault.
Baseline baseline_of(const ManifestEntry& entry) {
  Baseline baseline;
  const auto result = run_command({program_path(entry.number), "--json"}, Millis(30000));
  if (!result) return baseline;
  std::istringstream lines(result->out);
  std::string line;
  while (std::getline(lines, line)) {
    if (auto record = parse_flat_json(line); record && record->count("step") != 0) {
      baseline[record->at("step")] = calls_of(*record);
    }
  }
  return baseline;
}

// Runs every experiment under every condition; one CHECK per run, and a table of the results.
void run_matrix(const std::vector<Condition>& conditions, bool with_log) {
  std::ostringstream table;
  table << "experiment | condition | steps | could-not-run | verdicts | injected | ms | problems\n";
  for (const auto& entry : experiments_to_run()) {
    const auto baseline = baseline_of(entry);
    for (const auto& condition : conditions) {
      CAPTURE(entry.number);
      CAPTURE(condition.label);
      std::string log_path;
      auto run = condition;
      if (with_log) {
        log_path = temporary_path();
        run.wrap.insert(run.wrap.begin() + 1, "PORTREUSE_FAULT_LOG=" + log_path);
      }
      const auto report = run_under(entry, run, log_path, baseline);
      if (!log_path.empty()) ::unlink(log_path.c_str());
      std::string problems;
      for (std::size_t index = 0; index < report.problems.size() && index < 8; ++index) {
        problems += "\n  " + report.problems[index];
      }
      if (report.problems.size() > 8) problems += "\n  and " + std::to_string(report.problems.size() - 8) + " more";
      CHECK_MESSAGE(report.problems.empty(), entry.number << " under " << condition.label << ":" << problems);
      table << entry.number << " | " << condition.label << " | " << report.steps << " | " << report.could_not_run
            << " | " << report.verdicts << " | "
            << (report.injected < 0 ? std::string("-") : std::to_string(report.injected)) << " | " << report.took_ms
            << " | " << kinds_of(report.problems) << (report.not_started ? " (the loader could not start it)" : "")
            << (report.problems.empty() ? std::string() : "; first: " + report.problems.front()) << "\n";
    }
  }
  MESSAGE("results:\n" << table.str());
  // scripts/reliability.sh collects the rows of every run here (PORTREUSE_FAULT_REPORT=FILE).
  if (const char* path = std::getenv("PORTREUSE_FAULT_REPORT"); path != nullptr && *path != '\0') {
    std::istringstream rows(table.str());
    std::string row;
    std::getline(rows, row);  // the heading
    std::ofstream report(path, std::ios::app);
    while (std::getline(rows, row)) report << row << '\n' << std::flush;
  }
}

// `env LD_PRELOAD=... PORTREUSE_FAULT=spec`, to put before the program: only it gets the library.
// A sanitizer build's programs refuse a library loaded before the ASan runtime unless told that
// the order is fine (the preload only forwards calls; ASan still intercepts behind it).
std::string asan_options_with(const std::string& option) {
  const char* options = std::getenv("ASAN_OPTIONS");
  return std::string("ASAN_OPTIONS=") + (options != nullptr ? std::string(options) + ":" : std::string()) + option;
}

std::vector<std::string> with_fault(const std::string& spec) {
  std::vector<std::string> argv{"/usr/bin/env", std::string("LD_PRELOAD=") + PORTREUSE_FAULT_PRELOAD,
                                "PORTREUSE_FAULT=" + spec};
  if (PORTREUSE_SANITIZED) argv.push_back(asan_options_with("verify_asan_link_order=0"));
  return argv;
}

TEST_SUITE("robustness") {
  TEST_CASE("robustness: the fault preload fails the chosen call and refuses a spec it cannot read") {
    // A spec it cannot read stops the program before main: a fault never armed tests nothing.
    for (const char* bad :
         {"accept", "accept:", "accept:ENOTANERRNO", "frobnicate:EMFILE", "bind:EMFILE:after=x", "bind:EMFILE:twice"}) {
      CAPTURE(bad);
      auto argv = with_fault(bad);
      argv.emplace_back("/bin/true");
      const auto result = run_program(argv);
      CHECK(result.status.code == 125);
      CHECK(result.err.find("fault_preload: ") == 0);
    }
    // Armed: the program's calls fail and the log says so; the test itself is untouched.
    const auto log_path = temporary_path();
    auto argv = with_fault("socket:200");
    for (const auto& part : {"PORTREUSE_FAULT_LOG=" + log_path, tool_path("tcp_client"), std::string("--port"),
                             std::string("9"), std::string("hello")}) {
      argv.push_back(part);
    }
    const auto result = run_program(argv);
    CHECK(result.status.code != 0);
    CHECK(lines_in(log_path) >= 1);
    CHECK(result.err.find("errno 200") != std::string::npos);
    ::unlink(log_path.c_str());
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    ::close(fd);
  }

  TEST_CASE("robustness: the fault checks catch a verdict after a fault and a why that names another errno") {
    // The checks themselves, on records written by hand: each must be caught, and a clean one not.
    const Condition accept_fault{"accept:EMFILE", "accept", EMFILE, true, {}};
    const auto problems_of = [](const Condition& condition, const Record& record) {
      RunReport report;
      check_record(condition, record, report);
      return report.problems;
    };
    const std::string failed_accept = R"json(["server 7: accept -> EMFILE (Too many open files)"])json";
    // (a) a verdict although the server's accept failed.
    CHECK(problems_of(
              accept_fault,
              {{"step", "s"}, {"outcome", "ok"}, {"verdict", "holds"}, {"call", "bind"}, {"calls", failed_accept}})
              .size() == 1);
    // (a) a could-not-run whose why does not name the failed call and errno.
    CHECK_FALSE(
        problems_of(accept_fault,
                    {{"step", "s"}, {"outcome", "could-not-run"}, {"why", "it broke"}, {"calls", failed_accept}})
            .empty());
    // (b) a why that names an errno no call returned (the old "no free port (EADDRINUSE)").
    CHECK_FALSE(problems_of(accept_fault, {{"step", "s"},
                                           {"outcome", "could-not-run"},
                                           {"why", "accept (server) returned EMFILE, bind EADDRINUSE"},
                                           {"calls", failed_accept}})
                    .empty());
    // (d) the faulted call shown with another errno than the one injected.
    const Condition bind_200{"bind:200", "bind", 200, true, {}};
    CHECK_FALSE(
        problems_of(bind_200, {{"step", "s"},
                               {"outcome", "could-not-run"},
                               {"why", "bind (server) returned EIO (Input/output error)"},
                               {"calls", R"json(["server 7: bind 0.0.0.0:1 -> EIO (Input/output error)"])json"}})
            .empty());
    // A verdict that carries no calls cannot be checked.
    CHECK(problems_of(accept_fault, {{"step", "s"}, {"outcome", "ok"}, {"verdict", "holds"}}).size() == 1);
    // Clean: the failure named, no verdict; and a verdict whose calls show no fault.
    CHECK(problems_of(bind_200, {{"step", "s"},
                                 {"outcome", "could-not-run"},
                                 {"why", "bind 0.0.0.0:1 (server) returned errno 200 (Unknown error 200)"},
                                 {"calls", R"json(["server 7: bind 0.0.0.0:1 -> errno 200 (Unknown error 200)"])json"}})
              .empty());
    CHECK(problems_of(accept_fault,
                      {{"step", "s"},
                       {"outcome", "EADDRINUSE"},
                       {"verdict", "holds"},
                       {"call", "bind"},
                       {"calls", R"json(["server again 8: bind 0.0.0.0:1 -> EADDRINUSE (Address in use)"])json"}})
              .empty());
  }

  TEST_CASE("robustness: every experiment under injected faults gives no verdict without its scenario") {
    std::vector<Condition> conditions;
    for (const auto& row : kFaults) {
      conditions.push_back({row.spec, row.call, row.error, row.every_call, with_fault(row.spec)});
    }
    run_matrix(conditions, true);
  }

  TEST_CASE("robustness: every experiment under tight descriptor limits gives no verdict without its scenario") {
    if (::access(kPrlimit, X_OK) != 0) {
      MESSAGE("no prlimit here; not run");
      return;
    }
    std::vector<Condition> conditions;
    for (const int limit : kDescriptorLimits) {
      const auto text = std::to_string(limit);
      // Whichever call needs a descriptor fails: socket, accept, pipe2.
      conditions.push_back({"ulimit -n " + text, "", EMFILE, false, {kPrlimit, "--nofile=" + text + ":" + text}});
    }
    run_matrix(conditions, false);
  }

  TEST_CASE("robustness: every experiment under a tight process limit gives no verdict without its scenario") {
    // RLIMIT_NPROC counts the processes of the real user id, and is not enforced for root. As root
    // the program runs under a user id of its own (nobody else's processes count against the
    // limit); otherwise under this user, whose other processes count too, so fork fails sooner.
    std::vector<std::string> as_user;
    if (::geteuid() == 0) {
      const auto uid = std::to_string(200000 + ::getpid() % 100000);
      as_user = {"/usr/bin/setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups"};
      if (::access(as_user.front().c_str(), X_OK) != 0) {
        MESSAGE("running as root without setpriv: RLIMIT_NPROC would not be enforced; not run");
        return;
      }
    }
    if (::access(kPrlimit, X_OK) != 0) {
      MESSAGE("no prlimit here; not run");
      return;
    }
    std::vector<Condition> conditions;
    for (const int limit : kProcessLimits) {
      const auto text = std::to_string(limit);
      auto wrap = as_user;
      // LeakSanitizer's check at exit needs a thread of its own, which the limit refuses too
      // (RLIMIT_NPROC counts threads): that abort would be the sanitizer's, not the program's.
      if (PORTREUSE_SANITIZED) {
        wrap.emplace_back("/usr/bin/env");
        wrap.push_back(asan_options_with("detect_leaks=0"));
      }
      wrap.emplace_back(kPrlimit);
      wrap.push_back("--nproc=" + text + ":" + text);
      conditions.push_back({"ulimit -u " + text, "fork", EAGAIN, false, wrap});
    }
    run_matrix(conditions, false);
  }
}

}  // namespace
}  // namespace portreuse::testing
