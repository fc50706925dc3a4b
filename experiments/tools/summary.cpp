// portreuse-summary: the table at the end of scripts/run-all.sh.
// Reads the JSON Lines the experiments wrote in this run (one object per step) and prints, per
// step, what the article claims, what was observed here, and the verdict. It counts as "holds"
// only what an article said; our own readings of an article are listed apart. It reads only a
// regular file of step records of bounded size: anything else is bad input (exit status 2),
// never a table of nothing that "matched".
// With --preflight it checks, once for a whole run, that loopback carries a connection.
// Usage: portreuse-summary [--no-color] FILE | portreuse-summary --preflight
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "portreuse/cli.hpp"
#include "portreuse/errors.hpp"
#include "portreuse/fd.hpp"
#include "portreuse/json.hpp"
#include "portreuse/lab.hpp"  // preflight
#include "portreuse/narrator.hpp"

namespace {

using namespace portreuse;
using Row = std::map<std::string, std::string>;

// A run of all fifteen experiments writes well under a megabyte; anything much larger is not a
// record of a run.
constexpr std::size_t kMaxRecordBytes = std::size_t{16} << 20;
constexpr std::size_t kWidth = 80;
// exp | step | claimed | observed here | verdict: 4 + 29 + 14 + 14 + 19 = 80 columns.
constexpr std::size_t kExpWidth = 4;
constexpr std::size_t kStepWidth = 29;
constexpr std::size_t kOutcomeWidth = 14;

std::string padded(std::string text, std::size_t width) {
  if (text.size() < width) text.resize(width, ' ');
  return text;
}

Tone verdict_tone(const std::string& verdict) {
  if (verdict == "holds" || verdict == "inference-holds") return Tone::good;
  if (verdict == "could-not-run") return Tone::bad;
  return Tone::note;
}

// What went wrong with the file, in one line; or the whole file.
std::variant<std::string, std::string> read_record_file(const std::string& path) {
  using Failure = std::variant<std::string, std::string>;
  const auto failure = [](std::string why) { return Failure(std::in_place_index<1>, std::move(why)); };
  // O_NONBLOCK: a FIFO or a device must not hold the reader before fstat() can refuse it.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    const int error = errno;
    return failure("cannot open '" + escape_controls(path) + "' (" + describe_outcome(make_error(error)) + ")");
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return failure("cannot stat '" + escape_controls(path) + "'");
  if (!S_ISREG(info.st_mode))
    return failure("'" + escape_controls(path) + "' is not a regular file (want a record of a run)");
  if (static_cast<std::size_t>(info.st_size) > kMaxRecordBytes) {
    return failure("'" + escape_controls(path) + "' is too large to be a record of a run (over 16 MiB)");
  }
  std::string text;
  std::array<char, 65536> buffer{};
  for (;;) {
    const auto got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      return failure("cannot read '" + escape_controls(path) + "' (" + describe_outcome(make_error(error)) + ")");
    }
    if (got == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(got));
    if (text.size() > kMaxRecordBytes) {
      return failure("'" + escape_controls(path) + "' is too large to be a record of a run (over 16 MiB)");
    }
  }
  return Failure(std::in_place_index<0>, std::move(text));
}

bool is_experiment_number(const std::string& text) {
  return text.size() == 2 && text[0] >= '0' && text[0] <= '9' && text[1] >= '0' && text[1] <= '9';
}

// Every line must be one step's record: {"experiment":"NN","step":"...","outcome":"...",...}.
std::optional<std::string> check_record(const Row& row) {
  for (const char* key : {"experiment", "step", "outcome"}) {
    const auto found = row.find(key);
    if (found == row.end() || found->second.empty()) return "no \"" + std::string(key) + "\"";
  }
  if (!is_experiment_number(row.at("experiment"))) return "\"experiment\" is not a two-digit number";
  if (const auto said = row.find("said");
      said != row.end() && said->second != "article" && said->second != "inference" && said->second != "reference") {
    return "\"said\" is not \"article\", \"reference\" or \"inference\"";
  }
  return std::nullopt;
}

// A member of a record, or "" when the record has none (never adds one).
std::string member(const Row& row, const std::string& key) {
  const auto found = row.find(key);
  return found == row.end() ? std::string() : found->second;
}

void print_wrapped(std::ostream& out, const std::string& text) {
  for (const auto& line : wrap_text(text, kWidth)) out << line << "\n";
}

void print_row(std::ostream& out, const Narrator& paint, const Row& row, const std::string& verdict) {
  const std::string experiment = escape_controls(member(row, "experiment"));
  const std::string step = escape_controls(member(row, "step"));
  std::string line = padded(experiment, kExpWidth);
  if (step.size() + 2 > kStepWidth) {
    // A long step name gets a line of its own; its outcomes go on the next, under their columns.
    out << line << step << "\n";
    line = std::string(kExpWidth + kStepWidth, ' ');
  } else {
    line += padded(step, kStepWidth);
  }
  line += padded(escape_controls(member(row, "claimed")), kOutcomeWidth);
  line += padded(escape_controls(member(row, "outcome")), kOutcomeWidth);
  out << line << paint.paint(escape_controls(verdict), verdict_tone(verdict)) << "\n";
}

void print_header(std::ostream& out) {
  out << padded("exp", kExpWidth) << padded("step", kStepWidth) << padded("claimed", kOutcomeWidth)
      << padded("observed here", kOutcomeWidth) << "verdict\n"
      << std::string(kWidth, '-') << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cli(
      "portreuse-summary", "[--no-color] FILE | --preflight",
      "Prints the summary table of a run from the experiments' JSON Lines\n"
      "(a regular file of at most 16 MiB, one step record per line). With\n"
      "--preflight: checks that loopback carries a connection, which every\n"
      "experiment needs; exit status 1 and one line when it does not.",
      {{"--no-color", "", "no colours"}, {"--preflight", "", "check loopback once for a whole run, and exit"}}, 1);
  const auto parsed = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed);
  if (args.has("--preflight")) {
    if (!args.positional.empty()) return cli.usage_error("--preflight takes no FILE");
    if (auto problem = lab::preflight(std::nullopt)) {
      std::cerr << cli.program() << ": " << *problem << "\n";
      return kExitCouldNotRun;
    }
    return 0;
  }
  if (args.positional.size() != 1) return cli.usage_error("missing FILE");
  const std::string& path = args.positional[0];
  auto contents = read_record_file(path);
  if (contents.index() == 1) return cli.usage_error(std::get<1>(contents));
  const std::string& text = std::get<0>(contents);

  std::vector<Row> rows;
  std::size_t line_number = 0;
  for (std::size_t start = 0; start < text.size();) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_number;
    if (line.empty()) continue;
    auto row = parse_flat_json(line);
    if (!row) return cli.usage_error("line " + std::to_string(line_number) + " of '" + path + "' is not a step record");
    if (auto problem = check_record(*row)) {
      return cli.usage_error("line " + std::to_string(line_number) + " of '" + path +
                             "' is not a step record: " + *problem);
    }
    rows.push_back(std::move(*row));
  }

  const Narrator paint(std::cout, true, colour_wanted(args.has("--no-color"), 1));
  std::cout << "\n"
            << paint.paint("Summary: what the articles claim, and what this machine did", Tone::heading) << "\n\n";
  if (rows.empty()) {
    print_wrapped(std::cout,
                  "No step ran in this run: nothing was observed, so nothing is claimed. The messages of "
                  "the experiments say why they could not run.");
    return kExitCouldNotRun;
  }

  std::map<std::string, int> counts;
  int unexpected = 0;
  int observed = 0;
  std::vector<const Row*> readings;    // our readings of an article: listed apart, never counted as its claims
  std::vector<const Row*> references;  // claims of man pages, RFCs, engineers: not the five articles
  const auto verdict_of = [](const Row& row) {
    const auto verdict = member(row, "verdict");
    return verdict.empty() ? std::string("could-not-run") : verdict;
  };
  // A step ran to an outcome when the record says whether it was the one expected on Linux.
  const auto tally = [&](const Row& row) {
    if (member(row, "as_expected") == "false") ++unexpected;
    if (row.count("as_expected") > 0) ++observed;
  };
  print_header(std::cout);
  for (const auto& row : rows) {
    if (member(row, "said") == "inference") {
      readings.push_back(&row);
      continue;
    }
    if (member(row, "said") == "reference") {
      references.push_back(&row);
      continue;
    }
    const auto verdict = verdict_of(row);
    ++counts[verdict];
    tally(row);
    print_row(std::cout, paint, row, verdict);
  }
  std::cout << std::string(kWidth, '-') << "\n";
  const auto claims = rows.size() - readings.size() - references.size();
  print_wrapped(std::cout, std::to_string(claims) + (claims == 1 ? " claim" : " claims") +
                               " of the articles. Holds here: " + std::to_string(counts["holds"]) +
                               ". Does not hold here: " + std::to_string(counts["does-not-hold"]) + ".");
  std::string more = "Depends on the platform: " + std::to_string(counts["depends-on-platform"]) + ".";
  if (counts["skipped"] > 0)
    more +=
        " Skipped (not for this user or this system: each step's note says why): " + std::to_string(counts["skipped"]) +
        ".";
  if (counts["could-not-run"] > 0) more += " Could not run: " + std::to_string(counts["could-not-run"]) + ".";
  print_wrapped(std::cout, more);

  if (!references.empty()) {
    std::cout << "\n";
    print_wrapped(std::cout,
                  "Claims of other sources (man pages, RFCs, engineers' reports; not the five "
                  "articles, not counted above):");
    std::cout << "\n";
    print_header(std::cout);
    std::map<std::string, int> reference_counts;
    for (const auto* row : references) {
      const auto verdict = verdict_of(*row);
      ++reference_counts[verdict];
      tally(*row);
      print_row(std::cout, paint, *row, verdict);
    }
    std::cout << std::string(kWidth, '-') << "\n";
    print_wrapped(std::cout,
                  std::to_string(references.size()) + (references.size() == 1 ? " claim" : " claims") +
                      ". Holds here: " + std::to_string(reference_counts["holds"]) +
                      ". Does not hold here: " + std::to_string(reference_counts["does-not-hold"]) +
                      ". Depends on the platform: " + std::to_string(reference_counts["depends-on-platform"]) + ".");
  }

  if (!readings.empty()) {
    std::cout << "\n";
    print_wrapped(std::cout, "Our readings of the articles (they do not say these; not counted above):");
    std::cout << "\n";
    print_header(std::cout);
    std::array<int, 2> reading_counts{};
    for (const auto* row : readings) {
      const auto verdict = verdict_of(*row);
      if (verdict == "inference-holds") ++reading_counts[0];
      if (verdict == "inference-does-not-hold") ++reading_counts[1];
      tally(*row);
      // Under this heading "inference-" goes without saying (and would not fit 80 columns).
      const std::string prefix = "inference-";
      print_row(std::cout, paint, *row, verdict.rfind(prefix, 0) == 0 ? verdict.substr(prefix.size()) : verdict);
    }
    std::cout << std::string(kWidth, '-') << "\n";
    print_wrapped(std::cout, std::to_string(readings.size()) + (readings.size() == 1 ? " reading" : " readings") +
                                 ". Hold here: " + std::to_string(reading_counts[0]) +
                                 ". Do not hold here: " + std::to_string(reading_counts[1]) + ".");
  }

  if (observed == 0) {
    print_wrapped(std::cout, "No step ran to an outcome: nothing was observed, so nothing is claimed.");
  } else if (unexpected > 0) {
    std::cout << paint.paint(std::to_string(unexpected) + " step(s) behaved unlike the Linux the lessons describe:",
                             Tone::note)
              << "\n"
              << "read their explanations.\n";
  } else {
    print_wrapped(std::cout, "Every outcome observed (" + std::to_string(observed) +
                                 ") matched what the lessons expect on Linux.");
  }
  return 0;
}
