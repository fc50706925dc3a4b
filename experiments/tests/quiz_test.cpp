// --quiz in a real terminal (tmux): the student predicts, the step runs, the score is kept; and
// without a terminal the quiz refuses with one line and exit status 2.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "portreuse/json.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

// A private tmux server (its own socket name) with one 80-column window running `command`; the
// window stays after the command ends, so that its last screen can be read.
class QuizTerminal {
 public:
  explicit QuizTerminal(const std::string& command) : socket_("portreuse-quiz-" + unique_run_tag()) {
    ::unsetenv("TMUX");
    const auto started = run_command({"/usr/bin/env", "tmux", "-L", socket_, "new-session", "-d", "-x", "80", "-y",
                                      "50", "-c", PORTREUSE_SOURCE_DIR, command + "; sleep 120"},
                                     Millis(10000));
    REQUIRE_MESSAGE(started.has_value(), "could not run tmux");
    REQUIRE_MESSAGE(started->status.code == 0, "tmux failed: " << started->err);
  }
  QuizTerminal(const QuizTerminal&) = delete;
  QuizTerminal& operator=(const QuizTerminal&) = delete;
  ~QuizTerminal() { (void)run_command({"/usr/bin/env", "tmux", "-L", socket_, "kill-server"}, Millis(5000)); }

  void type(const std::string& keys) {
    (void)run_command({"/usr/bin/env", "tmux", "-L", socket_, "send-keys", keys, "Enter"}, Millis(5000));
  }
  std::string screen() {
    const auto shown =
        run_command({"/usr/bin/env", "tmux", "-L", socket_, "capture-pane", "-p", "-S", "-200"}, Millis(5000));
    return shown ? shown->out : std::string();
  }
  // Waits until the screen shows `text` (at least `times` times; bounded).
  bool expect(const std::string& text, int times = 1, Millis deadline = Millis(60000)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
      const auto shown = screen();
      int found = 0;
      for (auto at = shown.find(text); at != std::string::npos; at = shown.find(text, at + 1)) ++found;
      if (found >= times) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string socket_;
};

bool have_tmux() {
  return std::system("command -v tmux >/dev/null 2>&1") == 0;
}

TEST_SUITE("terminal") {
  TEST_CASE("quiz: one experiment asks then shows the kernel's answer and the score") {
    REQUIRE_MESSAGE(have_tmux(), "tmux is not installed (scripts/test.sh installs it)");
    QuizTerminal terminal(program_path("02") + " --quiz --no-color");
    REQUIRE_MESSAGE(terminal.expect("Your prediction for bind():"), terminal.screen());
    terminal.type("2");  // [2] EADDRINUSE
    REQUIRE_MESSAGE(terminal.expect("your predictions: 1 of 1 right."), terminal.screen());
    CHECK(terminal.screen().find("you predicted EADDRINUSE: right.") != std::string::npos);
  }

  TEST_CASE("quiz: run-all keeps the score of the whole class run") {
    REQUIRE_MESSAGE(have_tmux(), "tmux is not installed (scripts/test.sh installs it)");
    const std::string bin = PORTREUSE_BIN_DIR;
    QuizTerminal terminal("env PORTREUSE_BIN_DIR=" + bin +
                          " scripts/run-all.sh --no-build --no-color --no-ladder --quiz --only 01");
    for (int step = 1; step <= 2; ++step) {
      REQUIRE_MESSAGE(terminal.expect("Your prediction for bind():", step), terminal.screen());
      terminal.type("1");  // [1] ok: wrong for the first step, right for the restart
    }
    REQUIRE_MESSAGE(terminal.expect("Your predictions: 1 of 2 right."), terminal.screen());
  }

  TEST_CASE("quiz: with --json the answers go into the records beside the observed outcomes") {
    REQUIRE_MESSAGE(have_tmux(), "tmux is not installed (scripts/test.sh installs it)");
    const auto output = std::string(PORTREUSE_BIN_DIR) + "/quiz-" + unique_run_tag() + ".jsonl";
    QuizTerminal terminal(program_path("02") + " --quiz --json > " + output);
    REQUIRE_MESSAGE(terminal.expect("Your prediction for bind():"), terminal.screen());
    terminal.type("1");  // predicts ok
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string text;
    while (std::chrono::steady_clock::now() < until) {
      std::ifstream file(output);
      text.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
      if (text.find('\n') != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::unlink(output.c_str());
    const auto record = parse_flat_json(text.substr(0, text.find('\n')));
    REQUIRE(record.has_value());
    CHECK(record->at("prediction") == "ok");
    CHECK(record->at("outcome") == "EADDRINUSE");
    CHECK(record->at("predicted_right") == "false");
  }
}

TEST_CASE("quiz: without a terminal it refuses with one line and exit status 2") {
  const auto result = run_program({program_path("02"), "--quiz"});
  CHECK(result.status.code == 2);
  CHECK(result.out.empty());
  CHECK(result.err.find("--quiz needs a terminal") != std::string::npos);
  CHECK(result.err.find('\n') == result.err.size() - 1);
}

}  // namespace
}  // namespace portreuse::testing
