// Every program, as a user meets it: --help works, bad input gets one line, the usage, exit 2.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

struct BadArguments {
  std::vector<std::string> arguments;
  const char* message;  // what the first line of stderr must name
};

const std::vector<BadArguments> kBadInput{
    {{"--frobnicate"}, "unknown option --frobnicate"},
    {{"--port"}, "option --port needs a value"},
    {{"--port", "0"}, "bad port '0'"},
    {{"--port", "65536"}, "bad port '65536'"},
    {{"--port", "-1"}, "bad port '-1'"},
    {{"--port", "abc"}, "bad port 'abc'"},
    {{"stray"}, "unexpected argument 'stray'"},
};

TEST_CASE("programs: every experiment has --help and rejects bad input with exit status 2") {
  for (const auto& entry : read_manifest()) {
    CAPTURE(entry.number);
    const auto program = program_path(entry.number);
    const auto help = run_program({program, "--help"});
    CHECK(help.status.code == 0);
    CHECK(help.out.find("Usage: " + entry.number + "-" + entry.slug) == 0);
    for (const auto& bad : kBadInput) {
      std::vector<std::string> argv{program, "--json"};
      argv.insert(argv.end(), bad.arguments.begin(), bad.arguments.end());
      const auto result = run_program(argv);
      CAPTURE(bad.message);
      CHECK(result.status.exited);
      CHECK(result.status.code == 2);
      CHECK(result.out.empty());
      const auto first_line = result.err.substr(0, result.err.find('\n'));
      CHECK(first_line.find(bad.message) != std::string::npos);
      // One line, and where the help is: not the whole usage.
      CHECK(result.err == first_line + "\n");
      CHECK(first_line.find("--help") != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace portreuse::testing

namespace portreuse::testing {
namespace {

std::string read_file(const std::string& relative) {
  std::ifstream file(std::string(PORTREUSE_SOURCE_DIR) + "/" + relative);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

TEST_CASE("tests: no test name contains a comma") {
  // CTest runs each test with doctest's --test-case filter, which splits at commas: such a test
  // would silently lose its label (and so its preset) or match nothing at all.
  const std::string opening = "TEST_CASE(\"";
  const std::filesystem::path tests_dir = std::string(PORTREUSE_SOURCE_DIR) + "/experiments/tests";
  int names_seen = 0;
  for (const auto& file : std::filesystem::directory_iterator(tests_dir)) {
    if (file.path().extension() != ".cpp") continue;
    const auto text = read_file("experiments/tests/" + file.path().filename().string());
    for (auto at = text.find(opening); at != std::string::npos; at = text.find(opening, at + 1)) {
      const auto name_start = at + opening.size();
      const auto name = text.substr(name_start, text.find('"', name_start) - name_start);
      ++names_seen;
      CHECK_MESSAGE(name.find(',') == std::string::npos, file.path().filename() << ": " << name);
    }
  }
  CHECK(names_seen > 10);
}

TEST_CASE("docs: the header of run-all.sh lists the manifest") {
  std::string listed;
  for (const auto& entry : read_manifest()) listed += "#   " + entry.number + " " + entry.slug + "\n";
  const auto script = read_file("scripts/run-all.sh");
  CHECK_MESSAGE(script.find(listed + "#\n") != std::string::npos, "expected in scripts/run-all.sh:\n" << listed);
}

TEST_CASE("docs: README and the lesson index list every experiment in manifest order") {
  const auto readme = read_file("README.md");
  const auto index = read_file("lessons/README.md");
  std::size_t readme_at = 0;
  std::size_t index_at = 0;
  for (const auto& entry : read_manifest()) {
    CAPTURE(entry.number);
    const auto lesson = entry.number + "-" + entry.slug + ".md";
    const auto in_readme = readme.find(lesson, readme_at);
    const auto in_index = index.find(lesson, index_at);
    CHECK(in_readme != std::string::npos);
    CHECK(in_index != std::string::npos);
    if (in_readme != std::string::npos) readme_at = in_readme;
    if (in_index != std::string::npos) index_at = in_index;
    CHECK(!read_file("lessons/" + lesson).empty());
  }
}

}  // namespace
}  // namespace portreuse::testing
