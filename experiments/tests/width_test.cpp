// Everything a person reads fits 80 columns: each experiment's narration at default settings,
// every --help, every --step preview (with Enter fed on standard input), and what the classroom
// tools print in a short walkthrough-like scenario. A line is measured as a terminal shows it:
// colour codes take no room (the programs write none to a pipe anyway).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "portreuse/child.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

constexpr std::size_t kColumns = 80;

// The lines of `text` wider than 80 columns, each with its width, for the failure message.
std::string too_wide(const std::string& text) {
  std::string found;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t width = 0;
    for (std::size_t at = 0; at < line.size(); ++at) {
      if (line[at] == '\033') {  // an escape sequence: up to its final letter
        while (at < line.size() && (line[at] < '@' || line[at] > '~' || line[at] == '[')) ++at;
        continue;
      }
      // UTF-8 continuation bytes belong to the character before them.
      if ((static_cast<unsigned char>(line[at]) & 0xC0U) != 0x80U) ++width;
    }
    if (width > kColumns) found += std::to_string(width) + ": " + line + "\n";
  }
  return found;
}

void check_fits(const std::string& what, const CommandResult& result) {
  const auto wide = too_wide(result.out) + too_wide(result.err);
  CHECK_MESSAGE(wide.empty(), what << " prints lines wider than 80 columns:\n" << wide);
}

std::string enters(int count) {
  return std::string(static_cast<std::size_t>(count), '\n');
}

std::uint16_t fresh_port() {
  auto port = free_tcp_port();
  REQUIRE_MESSAGE(port.has_value(), "no free port: " << describe_outcome(port.error()));
  return *port;
}

// A tool started in the background with its output in a file; always stopped and reaped.
class Started {
 public:
  explicit Started(const std::vector<std::string>& argv)
      : path_(std::filesystem::temp_directory_path() /
              ("portreuse-width-" + std::to_string(::getpid()) + "-" + std::to_string(++counter_))) {
    const auto file = path_.string();
    auto child = ChildProcess::fork_running([&]() -> int {
      const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0) return 1;
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      return exec_program(argv);
    });
    REQUIRE(child.has_value());
    process_.emplace(std::move(child.value()));
  }
  Started(const Started&) = delete;
  Started& operator=(const Started&) = delete;
  ~Started() {
    if (process_) {
      (void)process_->send_signal(SIGINT);
      (void)process_->wait_for_exit();
    }
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }

  [[nodiscard]] std::string output() const {
    std::ifstream in(path_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  bool wait_for(const std::string& needle) const {
    const auto until = std::chrono::steady_clock::now() + kDefaultDeadline;
    while (output().find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(Millis(20));
    }
    return true;
  }

  // Ctrl+C, then everything it printed.
  std::string stop() {
    if (process_) {
      (void)process_->send_signal(SIGINT);
      (void)process_->wait_for_exit();
      process_.reset();
    }
    return output();
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
  std::optional<ChildProcess> process_;
};

TEST_SUITE("width") {
  TEST_CASE("width: every experiment's narration at default settings fits 80 columns") {
    for (const auto& entry : read_manifest()) {
      CAPTURE(entry.number);
      check_fits(entry.number + "-" + entry.slug, run_program({program_path(entry.number)}, Millis(20000)));
    }
  }

  TEST_CASE("width: every --help fits 80 columns") {
    for (const auto& entry : read_manifest()) {
      check_fits(entry.number + " --help", run_program({program_path(entry.number), "--help"}));
    }
    for (const char* tool : {"tcp_server", "tcp_client", "socket_states", "portreuse-summary", "portreuse-doctor"}) {
      const auto result = run_program({tool_path(tool), "--help"});
      CHECK_MESSAGE(result.out.find("Usage: ") != std::string::npos, tool << " --help printed:\n" << result.out);
      check_fits(std::string(tool) + " --help", result);
    }
  }

  TEST_CASE("width: every --step preview fits 80 columns") {
    for (const auto& entry : read_manifest()) {
      CAPTURE(entry.number);
      const auto result = run_program({program_path(entry.number), "--step"}, Millis(20000), enters(200));
      CHECK_MESSAGE(result.out.find("[Enter]") != std::string::npos, entry.number << " --step did not pause");
      check_fits(entry.number + " --step", result);
    }
  }

  TEST_CASE("width: the classroom tools in a short scenario fit 80 columns") {
    const auto port = std::to_string(fresh_port());
    const auto states = [&](const std::vector<std::string>& extra = {}) {
      std::vector<std::string> argv{tool_path("socket_states"), port};
      argv.insert(argv.end(), extra.begin(), extra.end());
      auto result = run_program(argv);
      check_fits("socket_states " + port, result);
      return result;
    };
    states();

    // Step 1 to 4 of the walkthrough: a server that closes first, a client, Ctrl+C, a restart.
    Started server({tool_path("tcp_server"), "--port", port, "--close-first"});
    REQUIRE_MESSAGE(server.wait_for("listening on"), server.output());
    states();
    const auto client = run_program({tool_path("tcp_client"), "--port", port, "hello"});
    CHECK(client.out.find("answer: \"HELLO\"") != std::string::npos);
    check_fits("tcp_client", client);
    REQUIRE_MESSAGE(server.wait_for("TIME_WAIT"), server.output());
    const auto server_text = server.stop();
    CHECK_MESSAGE(too_wide(server_text).empty(), "tcp_server prints:\n" << too_wide(server_text));
    const auto table = states({"--watch", "--count", "2"});
    CHECK(table.out.find("TIME-WAIT") != std::string::npos);
    for (const auto& options : {std::vector<std::string>{}, std::vector<std::string>{"--reuseaddr"}}) {
      std::vector<std::string> argv{tool_path("tcp_server"), "--port", port, "--close-first"};
      argv.insert(argv.end(), options.begin(), options.end());
      const auto restart = run_program(argv);
      CHECK(restart.status.code == 1);
      CHECK(restart.err.find("EADDRINUSE") != std::string::npos);
      check_fits("the failing restart", restart);
    }

    // Refusals: bad input, a refused connection, an address off this machine.
    check_fits("tcp_client refused",
               run_program({tool_path("tcp_client"), "--port", std::to_string(fresh_port()), "x"}));
    check_fits("tcp_client off loopback",
               run_program({tool_path("tcp_client"), "--port", port, "--addr", "192.0.2.1"}));
    check_fits("tcp_client bad --bind", run_program({tool_path("tcp_client"), "--port", port, "--bind", "nowhere"}));
    check_fits("tcp_server bad port", run_program({tool_path("tcp_server"), "--port", "65536"}));
    check_fits("socket_states bad count", run_program({tool_path("socket_states"), port, "--count", "9"}));
  }
}

}  // namespace
}  // namespace portreuse::testing
