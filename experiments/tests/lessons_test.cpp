// The lessons' commands, run as a student would type them from the repository root: every
// program a lesson names must exist, and every command that needs no second terminal and no
// keyboard must end with status 0 (or the status its line gives). See lessons/README.md,
// "Commands in the lessons", for the markers and for what is not run.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace portreuse::testing {
namespace {

namespace fs = std::filesystem;

struct LessonCommand {
  std::string file;  // lessons/NN-slug.md
  int line = 0;
  std::string text;         // as written in the lesson
  std::string not_run;      // why the test leaves it out; empty: it runs
  int expected_status = 0;  // from an "<!-- exit status N -->" marker, else 0
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The lessons this test reads: the numbered ones and the reference pages. The walkthrough has
// its own terminal test, and the doctor's lesson its own tests.
std::vector<fs::path> lesson_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(fs::path(PORTREUSE_SOURCE_DIR) / "lessons")) {
    const auto name = entry.path().filename().string();
    if (entry.path().extension() != ".md" || name == "walkthrough.md" || name == "doctor.md") continue;
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Why a command cannot run unattended; empty when it can.
std::string reason_not_run(const std::string& command, const std::string& line) {
  static const std::regex placeholder(R"((^|[\s:=,'(])(P|Q|NN|LIST|FILE|NN,NN)(\b|$))");
  static const std::regex marker(R"(<!--\s*not run:\s*([^-]*)-->)");
  std::smatch match;
  if (std::regex_search(line, match, marker)) return "marked: " + match[1].str();
  if (command.find("--step") != std::string::npos) return "waits for Enter (--step)";
  if (command.find("--quiz") != std::string::npos) return "waits for answers (--quiz)";
  if (command.find("--long") != std::string::npos) return "takes minutes (--long)";
  if (command.find("sudo") != std::string::npos) return "needs sudo";
  if (std::regex_search(command, placeholder)) return "has a placeholder to fill in";
  return {};
}

int status_marker(const std::string& line) {
  static const std::regex marker(R"(<!--\s*exit status (\d+)\s*-->)");
  std::smatch match;
  return std::regex_search(line, match, marker) ? std::stoi(match[1].str()) : 0;
}

// Commands: the lines of ```sh blocks, the "$ " lines of ```console blocks, and inline code that
// starts with build/default/bin/ or scripts/.
std::vector<LessonCommand> commands_in(const fs::path& path) {
  std::vector<LessonCommand> commands;
  const auto file = "lessons/" + path.filename().string();
  std::istringstream lines(read_text(path));
  std::string line;
  std::string fence;  // the info string of the open fenced block, "" outside
  std::string block_marker;
  int number = 0;
  static const std::regex inline_code(R"(`((?:build/default/bin|scripts)/[^`]+)`)");
  while (std::getline(lines, line)) {
    ++number;
    if (line.rfind("```", 0) == 0) {
      if (fence.empty()) {
        fence = line.size() > 3 ? line.substr(3) : std::string("text");
      } else {
        fence.clear();
        block_marker.clear();
      }
      continue;
    }
    if (!fence.empty()) {
      std::string command;
      if (fence == "sh") command = line;
      if (fence == "console" && line.rfind("$ ", 0) == 0) command = line.substr(2);
      if (command.empty() || command.front() == '#') continue;
      commands.push_back(
          {file, number, command, reason_not_run(command, block_marker + line), status_marker(block_marker + line)});
      continue;
    }
    // A marker on the line just before a fenced block applies to the block's commands.
    block_marker = line.find("<!--") != std::string::npos ? line : std::string();
    for (std::sregex_iterator it(line.begin(), line.end(), inline_code), end; it != end; ++it) {
      const auto command = (*it)[1].str();
      commands.push_back({file, number, command, reason_not_run(command, line), status_marker(line)});
    }
  }
  return commands;
}

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

// The command as the test runs it: the build's own bin directory instead of build/default/bin
// (a debug or asan build tests itself), a port from the kernel instead of a fixed one (other
// runs may hold 9999), and run-all told not to rebuild the test that is running it.
std::string as_run(std::string command) {
  const std::string bin_dir = PORTREUSE_BIN_DIR;
  for (std::size_t at = 0; (at = command.find("build/default/bin/", at)) != std::string::npos;) {
    command.replace(at, 18, bin_dir + "/");
    at += bin_dir.size() + 1;
  }
  static const std::regex fixed_port(R"(--port \d+)");
  command = std::regex_replace(command, fixed_port, "--port " + std::to_string(free_port()));
  static const std::regex run_all(R"((^|\s)(scripts/run-all\.sh))");
  command = std::regex_replace(command, run_all, "$1$2 --no-build");
  return "cd '" + std::string(PORTREUSE_SOURCE_DIR) + "' && PATH='" + bin_dir + "':\"$PATH\" PORTREUSE_BIN_DIR='" +
         bin_dir + "' NO_COLOR=1 " + command;
}

void run_lessons(const std::set<std::string>& wanted) {
  int ran = 0;
  for (const auto& path : lesson_files()) {
    const auto name = path.filename().string();
    const auto prefix = name.substr(0, 2);
    if (wanted.count(prefix) == 0 && wanted.count(name) == 0) continue;
    for (const auto& command : commands_in(path)) {
      CAPTURE(command.file);
      CAPTURE(command.line);
      CAPTURE(command.text);
      if (!command.not_run.empty()) {
        MESSAGE("not run (" << command.not_run << "): " << command.file << ":" << command.line << " " << command.text);
        continue;
      }
      const auto result = run_program({"/bin/sh", "-c", as_run(command.text)}, Millis(25000));
      INFO("stderr: " << result.err);
      CHECK_MESSAGE(result.status.exited, "ended by signal " << result.status.signal);
      CHECK(result.status.code == command.expected_status);
      ++ran;
    }
  }
  MESSAGE(ran << " command(s) run");
}

TEST_CASE("lessons: every program and script a lesson names exists") {
  static const std::regex program(R"(\bbuild/default/bin/([A-Za-z0-9_.-]+))");
  static const std::regex script(R"(\bscripts/([A-Za-z0-9_.-]+))");
  int named = 0;
  // Every lesson, the walkthrough and the doctor's included: a name must never dangle.
  for (const auto& entry : fs::directory_iterator(fs::path(PORTREUSE_SOURCE_DIR) / "lessons")) {
    if (entry.path().extension() != ".md") continue;
    const auto text = read_text(entry.path());
    CAPTURE(entry.path().filename().string());
    for (std::sregex_iterator it(text.begin(), text.end(), program), end; it != end; ++it) {
      CHECK_MESSAGE(fs::exists(fs::path(PORTREUSE_BIN_DIR) / (*it)[1].str()), "no program " << (*it)[0].str());
      ++named;
    }
    for (std::sregex_iterator it(text.begin(), text.end(), script), end; it != end; ++it) {
      CHECK_MESSAGE(fs::exists(fs::path(PORTREUSE_SOURCE_DIR) / "scripts" / (*it)[1].str()),
                    "no script " << (*it)[0].str());
      ++named;
    }
  }
  CHECK(named > 15);
}

TEST_CASE("lessons: the commands of lessons 01 to 03 run as written") {
  run_lessons({"01", "02", "03"});
}
TEST_CASE("lessons: the commands of lessons 04 to 06 run as written") {
  run_lessons({"04", "05", "06"});
}
TEST_CASE("lessons: the commands of lessons 07 to 09 run as written") {
  run_lessons({"07", "08", "09"});
}
TEST_CASE("lessons: the commands of lessons 10 to 12 run as written") {
  run_lessons({"10", "11", "12"});
}
TEST_CASE("lessons: the commands of lessons 13 to 15 run as written") {
  run_lessons({"13", "14", "15"});
}
TEST_CASE("lessons: the commands of lesson 16 run as written") {
  run_lessons({"16"});
}
TEST_CASE("lessons: the commands of lesson 18 run as written") {
  run_lessons({"18"});
}
TEST_CASE("lessons: the commands of the lessons index and reference pages run as written") {
  run_lessons({"README.md", "platforms.md", "sources.md"});
}

TEST_CASE("lessons: the extractor finds commands and their markers") {
  const auto skipped = reason_not_run("build/default/bin/01-same-port-twice --step", "");
  CHECK(skipped.find("--step") != std::string::npos);
  CHECK(!reason_not_run("scripts/run-all.sh --only NN", "").empty());
  CHECK(!reason_not_run("build/default/bin/02-time-wait-restart", "<!-- not run: needs a second terminal -->").empty());
  CHECK(reason_not_run("build/default/bin/02-time-wait-restart --port 12000", "").empty());
  CHECK(status_marker("`build/default/bin/02-time-wait-restart --port x` <!-- exit status 2 -->") == 2);
}

}  // namespace
}  // namespace portreuse::testing
