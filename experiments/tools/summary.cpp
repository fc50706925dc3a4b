// portreuse-summary: the table at the end of scripts/run-all.sh.
// Reads the JSON Lines the experiments wrote in this run (one object per step) and prints, per
// step, what the article claims, what was observed here, and the verdict.
// Usage: portreuse-summary [--no-color] FILE
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "portreuse/cli.hpp"
#include "portreuse/json.hpp"
#include "portreuse/narrator.hpp"

namespace {

std::string padded(std::string text, std::size_t width) {
  if (text.size() < width) text.resize(width, ' ');
  return text;
}

portreuse::Tone verdict_tone(const std::string& verdict) {
  if (verdict == "holds") return portreuse::Tone::good;
  if (verdict == "could-not-run") return portreuse::Tone::bad;
  return portreuse::Tone::note;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace portreuse;
  const CommandLine cli("portreuse-summary", "[--no-color] FILE",
                        "Prints the summary table of a run from the experiments' JSON Lines.",
                        {{"--no-color", "", "no colours"}}, 1);
  const auto parsed = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed);
  if (args.positional.size() != 1) return cli.usage_error("missing FILE");
  std::ifstream input(args.positional[0]);
  if (!input) {
    std::cerr << cli.program() << ": cannot read " << args.positional[0] << "\n";
    return kExitCouldNotRun;
  }
  const Narrator paint(std::cout, true, colour_wanted(args.has("--no-color"), 1));
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  while (std::getline(input, line)) {
    if (auto row = parse_flat_json(line)) rows.push_back(*row);
  }
  std::size_t step_width = 6;
  std::size_t outcome_width = 15;  // "observed here" and two spaces before the next header
  for (auto& row : rows) {
    step_width = std::max(step_width, row["step"].size() + 2);
    outcome_width = std::max({outcome_width, row["claimed"].size() + 2, row["outcome"].size() + 2});
  }
  const std::size_t rule_width = 5 + step_width + 2 * outcome_width + 20;
  std::map<std::string, int> counts;
  int unexpected = 0;
  std::cout << "\n"
            << paint.paint("Summary: what the articles claim, and what this machine did", Tone::heading) << "\n\n";
  std::cout << padded("exp", 5) << padded("step", step_width) << padded("article says", outcome_width)
            << padded("observed here", outcome_width) << "verdict\n";
  std::cout << std::string(rule_width, '-') << "\n";
  for (auto& row : rows) {
    const auto verdict = row.count("verdict") ? row["verdict"] : std::string("could-not-run");
    ++counts[verdict];
    if (row["as_expected"] == "false") ++unexpected;
    std::cout << padded(row["experiment"], 5) << padded(row["step"], step_width)
              << padded(row["claimed"], outcome_width) << padded(row["outcome"], outcome_width)
              << paint.paint(verdict, verdict_tone(verdict)) << "\n";
  }
  std::cout << std::string(rule_width, '-') << "\n"
            << rows.size() << " steps. The claim holds here: " << counts["holds"]
            << ". Does not hold here: " << counts["does-not-hold"]
            << ". Depends on the platform: " << counts["depends-on-platform"] << ".";
  if (counts["skipped"] > 0) {
    std::cout << " Skipped (not for this user or this system: each step's note says why): " << counts["skipped"]
              << ".";
  }
  if (counts["could-not-run"] > 0) std::cout << " Could not run: " << counts["could-not-run"] << ".";
  std::cout << "\n";
  if (unexpected > 0) {
    std::cout << paint.paint(std::to_string(unexpected) +
                                 " step(s) behaved unlike the Linux the lessons describe: read their explanations.",
                             Tone::note)
              << "\n";
  } else {
    std::cout << "Every outcome matched what the lessons expect on Linux.\n";
  }
  return 0;
}
