// The classroom walkthrough (lessons/walkthrough.md) done as a person does it: two terminals in
// tmux, a server in one and a client in the other, commands typed key by key, Ctrl+C as the key
// C-c, and the screens read back with capture-pane. Each check is something the person would see.
// Every wait polls the screen until a deadline; the tmux server is private to the test (its own
// socket name) and is always killed at the end.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "portreuse/child.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr Millis kScreenDeadline{10000};

std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream directories(path != nullptr ? path : "/usr/bin:/bin");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    const auto candidate = (directory.empty() ? std::string(".") : directory) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

// The number printed after `label` at its last occurrence ("... for another 57.3 s"), or -1.
double last_number_after(const std::string& text, const std::string& label) {
  const auto at = text.rfind(label);
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + label.size(), nullptr);
}

// The digits after `label` at its last occurrence ("... from 127.0.0.1:52854 ..." -> "52854").
std::string number_after(const std::string& text, const std::string& label) {
  const auto at = text.rfind(label);
  if (at == std::string::npos) return {};
  const auto from = at + label.size();
  auto to = from;
  while (to < text.size() && text[to] >= '0' && text[to] <= '9') ++to;
  return text.substr(from, to - from);
}

// After Ctrl+C the prompt is the last line, alone: "$", not "...^C$".
bool prompt_after_ctrl_c(const std::string& text) {
  const auto end = text.find_last_not_of(" \n");
  if (end == std::string::npos) return false;
  const auto line_start = text.rfind('\n', end);
  return text.substr(line_start == std::string::npos ? 0 : line_start + 1, end + 1 - (line_start + 1)) == "$";
}

// Whether one line of `text` holds every part, in this order (a socket table's row, whatever
// the column widths).
bool has_row(const std::string& text, const std::vector<std::string>& parts) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t at = 0;
    bool all = true;
    for (const auto& part : parts) {
      at = line.find(part, at);
      if (at == std::string::npos) {
        all = false;
        break;
      }
      at += part.size();
    }
    if (all) return true;
  }
  return false;
}

// A private tmux server with one session; killed (with everything running in its panes) on
// destruction, whatever happened in the test.
class Tmux {
 public:
  Tmux(std::string binary, std::string directory)
      : binary_(std::move(binary)),
        socket_("portreuse-test-" + std::to_string(::getpid()) + "-" +
                std::to_string(Clock::now().time_since_epoch().count() % 1000000007)),
        directory_(std::move(directory)) {}
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;
  ~Tmux() { (void)run_command({binary_, "-L", socket_, "kill-server"}, Millis(5000)); }

  CommandResult run(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), {binary_, "-L", socket_, "-f", "/dev/null"});
    auto result = run_command(arguments, Millis(5000));
    REQUIRE_MESSAGE(result.has_value(), "could not run tmux");
    return std::move(result.value());
  }

  // A terminal with a plain interactive shell whose PATH starts with the tools' directory, as the
  // walkthrough asks the instructor to set up. Returns the pane's id.
  std::string open_terminal(const std::string& environment) {
    const std::string shell = "exec env -u NO_COLOR PS1='$ ' HISTFILE=/dev/null " + environment +
                              " PATH=" + std::string(PORTREUSE_BIN_DIR) + ":\"$PATH\" bash --norc --noprofile -i";
    std::vector<std::string> arguments;
    if (!session_started_) {
      // 80 columns, as a classroom terminal; capture-pane -J joins what wraps.
      arguments = {"new-session", "-d", "-x",       "80", "-y", "50",         "-s",
                   "walk",        "-c", directory_, "-P", "-F", "#{pane_id}", shell};
    } else {
      arguments = {"split-window", "-d", "-v", "-t", "walk", "-c", directory_, "-P", "-F", "#{pane_id}", shell};
    }
    const auto result = run(arguments);
    INFO("tmux said: " << result.err);
    REQUIRE(result.status.exited);
    REQUIRE(result.status.code == 0);
    session_started_ = true;
    std::string pane = result.out.substr(0, result.out.find('\n'));
    REQUIRE(!pane.empty());
    CHECK_MESSAGE(prompt_is_back(wait_for_screen(pane, prompt_is_back)), "no shell prompt in the new terminal");
    return pane;
  }

  // Types a command and Enter, as a person would; the output of this command is then whatever
  // the screen shows below it.
  void type(const std::string& pane, const std::string& command) {
    REQUIRE(run({"send-keys", "-t", pane, "-l", command}).status.code == 0);
    REQUIRE(run({"send-keys", "-t", pane, "Enter"}).status.code == 0);
    last_command_[pane] = command;
  }

  // Types a line into the program running in the pane (not a new command for the shell).
  void type_into(const std::string& pane, const std::string& line) const {
    REQUIRE(run({"send-keys", "-t", pane, "-l", line}).status.code == 0);
    REQUIRE(run({"send-keys", "-t", pane, "Enter"}).status.code == 0);
  }

  void press(const std::string& pane, const std::string& key) const {
    REQUIRE(run({"send-keys", "-t", pane, key}).status.code == 0);
  }

  // Everything the pane shows, scrollback included, wrapped lines joined; with `styles`, the
  // colours too, as escape sequences.
  std::string screen(const std::string& pane, bool styles = false) const {
    std::vector<std::string> arguments{"capture-pane", "-p", "-J", "-S", "-", "-t", pane};
    if (styles) arguments.push_back("-e");
    return run(arguments).out;
  }

  // The screen below the last command typed in this pane.
  std::string output(const std::string& pane) const {
    auto text = screen(pane);
    const auto found = last_command_.find(pane);
    if (found == last_command_.end()) return text;
    const auto at = text.rfind("$ " + found->second + "\n");
    return at == std::string::npos ? std::string() : text.substr(at);
  }

  std::string wait_for_screen(const std::string& pane, const std::function<bool(const std::string&)>& ready,
                              Millis deadline = kScreenDeadline) const {
    const auto until = Clock::now() + deadline;
    auto pause = Millis(20);
    for (;;) {
      auto text = screen(pane);
      if (ready(text) || Clock::now() >= until) return text;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, Millis(200));
    }
  }

  // Waits until the output of the last command shows every one of `needles`; checks that it did.
  std::string expect(const std::string& pane, const std::vector<std::string>& needles) const {
    const auto until = Clock::now() + kScreenDeadline;
    std::string text;
    for (;;) {
      text = output(pane);
      bool all = true;
      for (const auto& needle : needles) all = all && text.find(needle) != std::string::npos;
      if (all || Clock::now() >= until) break;
      std::this_thread::sleep_for(Millis(50));
    }
    for (const auto& needle : needles) {
      CHECK_MESSAGE(text.find(needle) != std::string::npos, "the terminal does not show \"" << needle
                                                                                            << "\"; it shows:\n"
                                                                                            << screen(pane));
    }
    return text;
  }

  // Waits for the shell prompt below the last command: the command has ended.
  std::string expect_prompt(const std::string& pane) const {
    const auto until = Clock::now() + kScreenDeadline;
    for (;;) {
      auto text = output(pane);
      const bool back = prompt_is_back(text) && text.find('\n') < text.size() - 1;
      if (back || Clock::now() >= until) {
        CHECK_MESSAGE(back, "the command did not end; the terminal shows:\n" << screen(pane));
        return text;
      }
      std::this_thread::sleep_for(Millis(50));
    }
  }

  // capture-pane drops trailing spaces: an idle prompt is a last line of just "$".
  static bool prompt_is_back(const std::string& text) {
    const auto end = text.find_last_not_of(" \n");
    if (end == std::string::npos) return false;
    const auto line_start = text.rfind('\n', end);
    const auto last_line = text.substr(line_start == std::string::npos ? 0 : line_start + 1,
                                       end + 1 - (line_start == std::string::npos ? 0 : line_start + 1));
    return last_line == "$";
  }

 private:
  std::string binary_;
  std::string socket_;
  std::string directory_;
  bool session_started_ = false;
  std::map<std::string, std::string> last_command_;
};

std::string require_tmux() {
  ::unsetenv("TMUX");  // the test may itself run inside someone's tmux
  const auto tmux = find_in_path("tmux");
  REQUIRE_MESSAGE(tmux.has_value(),
                  "tmux is not installed, and this test drives the walkthrough in it: apt-get install tmux "
                  "(.ci/run installs it)");
  for (const char* tool : {"tcp_server", "tcp_client", "socket_states"}) {
    REQUIRE_MESSAGE(std::filesystem::exists(tool_path(tool)), tool_path(tool) << " is not built");
  }
  return *tmux;
}

std::uint16_t fresh_port() {
  auto port = free_tcp_port();
  REQUIRE_MESSAGE(port.has_value(), "no free port: " << describe_outcome(port.error()));
  return *port;
}

TEST_SUITE("terminal") {
  TEST_CASE("walkthrough: every step and variation shows what lessons/walkthrough.md promises") {
    Tmux tmux(require_tmux(), PORTREUSE_SOURCE_DIR);
    const auto server = tmux.open_terminal("");
    const auto client = tmux.open_terminal("");
    const auto port = std::to_string(fresh_port());

    // Before class: the port is free.
    tmux.type(client, "socket_states " + port);
    tmux.expect(client, {"(no sockets: nothing uses port " + port + ")"});

    // Step 1: the server listens, and the table shows its listener with its pid.
    tmux.type(server, "tcp_server --port " + port + " --close-first");
    tmux.expect(server, {"bind 0.0.0.0:" + port + " ... ok", "listening on 0.0.0.0:" + port, "Ctrl+C stops it"});
    tmux.type(client, "socket_states " + port);
    CHECK(has_row(tmux.expect_prompt(client), {"LISTEN", "0.0.0.0:" + port, "0.0.0.0:*", "tcp_server"}));
    // The Ask: a second server on the port fails, and the message names the first one's pid.
    tmux.type(client, "tcp_server --port " + port);
    tmux.expect(client, {"EADDRINUSE (Address already in use)", "LISTEN", "tcp_server"});
    tmux.expect_prompt(client);

    // Step 2: a client talks to it; the server answers, closes first and says how long the
    // TIME_WAIT lasts.
    tmux.type(client, "tcp_client --port " + port + " hello");
    const auto talk = tmux.expect(client, {"answer: \"HELLO\"", "the server closed the connection first"});
    tmux.expect_prompt(client);
    tmux.expect(server, {"connection from 127.0.0.1:", "received \"hello\"", "answered \"HELLO\"",
                         "closed the connection first (--close-first)", "in TIME_WAIT for", "s more (until"});

    // Step 3: Ctrl+C; the server closes cleanly and the shell is back.
    tmux.press(server, "C-c");
    tmux.expect(server, {"SIGINT: closed the listening socket; exiting"});
    tmux.expect_prompt(server);

    // Step 4: the same command again fails in bind(), says why and how long, and exits 1.
    tmux.type(server, "tcp_server --port " + port + " --close-first");
    tmux.expect(server, {"tcp_server: bind 0.0.0.0:" + port + ": EADDRINUSE (Address already in use)",
                         "TIME-WAIT  127.0.0.1:" + port, "s left", "Likely reason:", "TIME_WAIT"});
    tmux.expect_prompt(server);
    tmux.type(server, "echo $?");
    tmux.expect(server, {"$ echo $?\n1\n"});

    // Step 5: nothing runs any more, but the table shows the server's side in TIME-WAIT.
    tmux.type(client, "socket_states " + port);
    const auto table = tmux.expect(client, {"TIME_WAIT keeps port " + port + " bound for another"});
    CHECK(has_row(table, {"TIME-WAIT", "127.0.0.1:" + port, "127.0.0.1:", " s", "kernel"}));
    CHECK(table.find("LISTEN") == std::string::npos);
    const double seconds_at_first_look = last_number_after(table, "bound for another ");
    CHECK(seconds_at_first_look > 0);

    // Step 6: the surprise: --reuseaddr on the restart alone still fails on Linux.
    tmux.type(server, "tcp_server --port " + port + " --close-first --reuseaddr");
    tmux.expect(server, {"setsockopt SO_REUSEADDR=1 ... ok",
                         "tcp_server: bind 0.0.0.0:" + port + ": EADDRINUSE (Address already in use)",
                         "This socket did set SO_REUSEADDR"});
    tmux.expect_prompt(server);

    // Step 7: the countdown runs down to an empty table; Ctrl+C ends the watch on a line of its own.
    tmux.type(client, "socket_states " + port + " --watch");
    tmux.expect(client, {"refreshing every second", "bound for another"});
    const auto emptied_screen = tmux.wait_for_screen(
        client,
        [&](const std::string&) {
          return tmux.output(client).find("(no sockets: nothing uses port " + port) != std::string::npos;
        },
        Millis(80000));
    CHECK_MESSAGE(tmux.output(client).find("(no sockets: nothing uses port " + port) != std::string::npos,
                  "the TIME_WAIT did not end within 80 s; the terminal shows:\n"
                      << emptied_screen);
    tmux.press(client, "C-c");
    tmux.wait_for_screen(client, prompt_after_ctrl_c);
    CHECK_MESSAGE(prompt_after_ctrl_c(tmux.screen(client)), "the prompt does not start a line of its own:\n"
                                                                << tmux.screen(client));

    // Step 8: with SO_REUSEADDR on the old server and on the new one, the restart works at once.
    tmux.type(server, "tcp_server --port " + port + " --close-first --reuseaddr");
    tmux.expect(server, {"listening on 0.0.0.0:" + port});
    tmux.type(client, "tcp_client --port " + port + " hello again");
    const auto again = tmux.expect(client, {"answer: \"HELLO AGAIN\"", " from 127.0.0.1:"});
    tmux.expect_prompt(client);
    const auto client_port = number_after(again, " from 127.0.0.1:");
    tmux.press(server, "C-c");
    tmux.expect(server, {"SIGINT: closed the listening socket; exiting"});
    tmux.expect_prompt(server);
    tmux.type(server, "tcp_server --port " + port + " --close-first --reuseaddr");
    tmux.expect(server, {"bind 0.0.0.0:" + port + " ... ok", "listening on 0.0.0.0:" + port});
    tmux.type(client, "socket_states " + port);
    const auto both = tmux.expect_prompt(client);
    CHECK(has_row(both, {"LISTEN", "0.0.0.0:" + port}));
    CHECK(has_row(both, {"TIME-WAIT", "127.0.0.1:" + port, "127.0.0.1:" + client_port, "kernel"}));
    // The Ask's answer: the TIME_WAIT does not even lock its own pair; a new SYN from the same
    // client port is accepted, and the new connection replaces it.
    tmux.type(client, "tcp_client --port " + port + " --bind 127.0.0.1:" + client_port + " probe");
    tmux.expect(client, {"bind 127.0.0.1:" + client_port + " ... ok", "answer: \"PROBE\""});
    tmux.expect_prompt(client);
    tmux.press(server, "C-c");
    tmux.expect(server, {"SIGINT: closed the listening socket; exiting"});
    tmux.expect_prompt(server);

    // If the minute ran out: on a free port, one command brings a TIME_WAIT back on the server's
    // side, and the restart of step 4 fails again.
    const auto again_port = std::to_string(fresh_port());
    tmux.type(client, "tcp_server --port " + again_port + " --close-first --once & sleep 1; tcp_client --port " +
                          again_port + " hi; wait");
    tmux.expect(client, {"answer: \"HI\"", "served one connection (--once)"});
    tmux.expect_prompt(client);
    tmux.type(server, "tcp_server --port " + again_port + " --close-first");
    tmux.expect(server, {"EADDRINUSE (Address already in use)", "TIME-WAIT  127.0.0.1:" + again_port});
    tmux.expect_prompt(server);

    // Variation 1: the client closes first; its TIME_WAIT leaves the server's port free.
    const auto v1 = std::to_string(fresh_port());
    tmux.type(server, "tcp_server --port " + v1 + " --receipt");
    tmux.expect(server, {"listening on 0.0.0.0:" + v1});
    tmux.type(client, "tcp_client --port " + v1 + " --close-first hello");
    tmux.expect(client, {"answer: \"message received\"", "closing the connection first (--close-first)"});
    tmux.expect_prompt(client);
    tmux.type(client, "socket_states " + v1);
    const auto client_side = tmux.expect_prompt(client);
    CHECK(has_row(client_side, {"LISTEN", "0.0.0.0:" + v1}));
    CHECK(has_row(client_side, {"TIME-WAIT", "127.0.0.1:", "127.0.0.1:" + v1, "kernel"}));
    CHECK_FALSE(has_row(client_side, {"TIME-WAIT", "127.0.0.1:" + v1 + " ", "127.0.0.1:"}));
    tmux.press(server, "C-c");
    tmux.expect_prompt(server);
    tmux.type(server, "tcp_server --port " + v1 + " --receipt");
    tmux.expect(server, {"bind 0.0.0.0:" + v1 + " ... ok"});
    tmux.press(server, "C-c");
    tmux.expect_prompt(server);

    // Variation 2: a forked child keeps the connection; Ctrl+D ends it at once (--close-first).
    const auto v2 = std::to_string(fresh_port());
    tmux.type(server, "tcp_server --port " + v2 + " --fork");
    tmux.expect(server, {"listening on 0.0.0.0:" + v2});
    tmux.type(client, "tcp_client --port " + v2 + " --close-first");
    tmux.expect(client, {"type a line and press Enter; Ctrl+D ends"});
    tmux.type_into(client, "still here");
    tmux.expect(client, {"answer: \"STILL HERE\""});
    tmux.press(server, "C-c");
    tmux.expect(server, {"still serves its connection"});
    tmux.expect_prompt(server);
    tmux.type(server, "tcp_server --port " + v2);
    tmux.expect(server, {"EADDRINUSE (Address already in use)", "ESTAB      127.0.0.1:" + v2, "tcp_server"});
    tmux.expect_prompt(server);
    tmux.press(client, "C-d");
    tmux.expect(client, {"  closed\n"});
    const auto left = tmux.expect_prompt(client);
    CHECK(left.find("closing the connection first (--close-first)") != std::string::npos);
    CHECK(left.find("waiting up to") == std::string::npos);
    // The child's last lines land in A after its prompt; Enter there gives a fresh one.
    tmux.wait_for_screen(server, [](const std::string& text) {
      return text.find("the client closed the connection (it closed first)") != std::string::npos;
    });
    CHECK(tmux.screen(server).find("the client closed the connection (it closed first)") != std::string::npos);
    tmux.press(server, "Enter");
    tmux.wait_for_screen(server, prompt_after_ctrl_c);
    tmux.type(client, "socket_states " + v2);
    CHECK(has_row(tmux.expect_prompt(client), {"TIME-WAIT", "127.0.0.1:", "127.0.0.1:" + v2, "kernel"}));

    // Variation 3: two live servers, --reuseaddr on both: the second fails; --reuseport on both works.
    const auto v3 = std::to_string(fresh_port());
    tmux.type(server, "tcp_server --port " + v3 + " --reuseaddr");
    tmux.expect(server, {"listening on 0.0.0.0:" + v3});
    tmux.type(client, "tcp_server --port " + v3 + " --reuseaddr");
    tmux.expect(client, {"EADDRINUSE (Address already in use)", "LISTEN", "tcp_server"});
    tmux.expect_prompt(client);
    tmux.press(server, "C-c");
    tmux.expect_prompt(server);
    const auto v3b = std::to_string(fresh_port());
    tmux.type(server, "tcp_server --port " + v3b + " --reuseport");
    tmux.expect(server, {"listening on 0.0.0.0:" + v3b});
    tmux.type(client, "tcp_server --port " + v3b + " --reuseport");
    tmux.expect(client, {"listening on 0.0.0.0:" + v3b});
    tmux.press(client, "C-c");
    tmux.expect_prompt(client);
    tmux.press(server, "C-c");
    tmux.expect_prompt(server);

    // --linger0: a reset instead of a FIN, and no TIME_WAIT at all.
    const auto v4 = std::to_string(fresh_port());
    tmux.type(server, "tcp_server --port " + v4 + " --close-first --linger0");
    tmux.expect(server, {"listening on 0.0.0.0:" + v4});
    tmux.type(client, "tcp_client --port " + v4 + " hello");
    tmux.expect(client, {"ECONNRESET (Connection reset by peer)"});
    tmux.expect_prompt(client);
    tmux.type(client, "socket_states " + v4);
    const auto after_reset = tmux.expect_prompt(client);
    CHECK(has_row(after_reset, {"LISTEN", "0.0.0.0:" + v4}));
    CHECK(after_reset.find("TIME-WAIT") == std::string::npos);
    tmux.press(server, "C-c");
    tmux.expect_prompt(server);
    (void)talk;
  }

  TEST_CASE("colour: a terminal gets colours unless NO_COLOR is set") {
    Tmux tmux(require_tmux(), PORTREUSE_SOURCE_DIR);
    const auto coloured = tmux.open_terminal("");
    const auto plain = tmux.open_terminal("NO_COLOR=1");
    const auto port = std::to_string(fresh_port());
    for (const auto& pane : {coloured, plain}) {
      tmux.type(pane, "socket_states " + port);
      tmux.expect(pane, {"(no sockets: nothing uses port " + port + ")"});
      tmux.expect_prompt(pane);
    }
    CHECK(tmux.screen(coloured, true).find("\033[") != std::string::npos);
    CHECK(tmux.screen(plain, true).find("\033[") == std::string::npos);
  }

  TEST_CASE("run-all --step: pauses with a preview before each experiment and step and goes on at Enter") {
    Tmux tmux(require_tmux(), PORTREUSE_SOURCE_DIR);
    // run-all.sh finds the programs in build/<preset>/bin: name the build this test belongs to.
    const std::filesystem::path bin_dir(PORTREUSE_BIN_DIR);
    const auto build_dir = bin_dir.parent_path();
    REQUIRE_MESSAGE(build_dir.parent_path() == std::filesystem::path(PORTREUSE_SOURCE_DIR) / "build",
                    "run-all.sh runs the programs of build/<preset>/; this build is elsewhere: " << build_dir);
    const auto terminal = tmux.open_terminal("PORTREUSE_PRESET=" + build_dir.filename().string());
    const auto first = read_manifest().front();
    tmux.type(terminal, "scripts/run-all.sh --step --no-build --only " + first.number);

    // It pauses before the experiment, with a one-line preview, and does nothing until Enter.
    tmux.expect(terminal, {"next: experiment " + first.number + ", " + first.title, "[Enter]"});
    std::this_thread::sleep_for(Millis(500));
    auto text = tmux.output(terminal);
    CHECK(text.find("Experiment " + first.number + ":") == std::string::npos);
    CHECK(count_of(text, "[Enter]") == 1);

    // Each Enter lets exactly one more piece run, up to the next pause: the banner, then one step.
    std::size_t pauses = 1;
    for (int presses = 0; presses < 20; ++presses) {
      tmux.press(terminal, "Enter");
      text = tmux.wait_for_screen(terminal, [&](const std::string&) {
        const auto now = tmux.output(terminal);
        return count_of(now, "[Enter]") > pauses || now.find("experiment(s) in") != std::string::npos;
      });
      text = tmux.output(terminal);
      if (text.find("experiment(s) in") != std::string::npos) break;
      // Exactly one more pause per Enter: nothing ran past the next pause.
      CHECK(count_of(text, "[Enter]") == pauses + 1);
      pauses = count_of(text, "[Enter]");
      CAPTURE(text);
      CHECK(text.find("Experiment " + first.number + ":") != std::string::npos);
      // A pause before each step, the experiment's own, and those inside steps (where the
      // step's sockets are up for a look): at least one more than the steps begun.
      CHECK(count_of(text, "--- step ") + 1 <= pauses);
    }
    tmux.expect(terminal, {"Summary: what the articles claim", "experiment(s) in"});
    CHECK(count_of(tmux.output(terminal), "--- step ") + 1 <= pauses);
    tmux.expect_prompt(terminal);
  }
}

}  // namespace
}  // namespace portreuse::testing
