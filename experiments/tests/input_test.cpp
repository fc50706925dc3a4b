// Input that cannot fool the tools (CTest label "robustness"): run-all's --only and
// PORTREUSE_PRESET, the summary tool's record file, control characters from users and peers,
// the record's temporary file, a loopback that does not work, and the order of the messages.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "portreuse/child.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

namespace fs = std::filesystem;

std::string run_all_path() {
  return std::string(PORTREUSE_SOURCE_DIR) + "/scripts/run-all.sh";
}

// run-all against this build, with extra environment variables first.
std::vector<std::string> run_all(const std::vector<std::string>& arguments, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv{"/usr/bin/env", std::string("PORTREUSE_BIN_DIR=") + PORTREUSE_BIN_DIR};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(run_all_path());
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  return argv;
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// A directory of its own under the build tree, removed at the end of the test.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string pattern = (fs::path(PORTREUSE_BIN_DIR).parent_path() / "input-test-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path)) names.push_back(entry.path().filename().string());
    return names;
  }
};

// Files whose names start with the prefix, in a directory.
std::vector<std::string> files_starting(const fs::path& directory, const std::string& prefix) {
  std::vector<std::string> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) found.push_back(name);
  }
  return found;
}

void check_one_line_usage_error(const CommandResult& result, const std::string& message) {
  CHECK(result.status.exited);
  CHECK(result.status.code == 2);
  CHECK(result.out.empty());
  CHECK(result.err == first_line(result.err) + "\n");
  CHECK(first_line(result.err).find(message) != std::string::npos);
  CHECK(first_line(result.err).find("--help") != std::string::npos);
  CHECK(result.err.find('\033') == std::string::npos);
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
}

std::string record_line(const std::string& experiment, const std::string& step, const std::string& said,
                        const std::string& verdict, const std::string& outcome = "EADDRINUSE") {
  return "{\"experiment\":\"" + experiment + "\",\"step\":\"" + step + "\",\"said\":\"" + said +
         "\",\"call\":\"bind\",\"outcome\":\"" + outcome + "\",\"expected\":\"" + outcome +
         "\",\"as_expected\":true,\"claimed\":\"EADDRINUSE\",\"verdict\":\"" + verdict + "\"}\n";
}

std::size_t widest_line(const std::string& text) {
  std::size_t widest = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) widest = std::max(widest, line.size());
  return widest;
}

TEST_SUITE("robustness") {
  TEST_CASE("input: run-all --only takes 2 or 02 and refuses empty items and repeats") {
    for (const auto& only : {"2", "02", "002"}) {
      CAPTURE(only);
      const auto result = run_program(run_all({"--only", only, "--list"}));
      if (std::string(only) == "002") {
        check_one_line_usage_error(result, "unknown experiment '002'");
        continue;
      }
      CHECK(result.status.code == 0);
      CHECK(result.out.rfind("02  time-wait-restart", 0) == 0);
      CHECK(std::count(result.out.begin(), result.out.end(), '\n') == 1);
    }
    const auto both = run_program(run_all({"--only=5,2", "--list"}));
    CHECK(both.status.code == 0);
    CHECK(both.out.rfind("05  ", 0) == 0);
    CHECK(both.out.find("\n02  ") != std::string::npos);

    struct Bad {
      std::string only;
      const char* message;
    };
    for (const auto& bad :
         {Bad{"", "needs at least one experiment"}, Bad{"02,", "empty item"}, Bad{",02", "empty item"},
          Bad{"02,,05", "empty item"}, Bad{",", "empty item"}, Bad{"01,01", "experiment 01 is named twice"},
          Bad{"1,01", "experiment 01 is named twice"}, Bad{"7,2,07", "experiment 07 is named twice"}}) {
      CAPTURE(bad.only);
      check_one_line_usage_error(run_program(run_all({"--no-build", "--only", bad.only})), bad.message);
      check_one_line_usage_error(run_program(run_all({"--no-build", "--only=" + bad.only})), bad.message);
    }
  }

  TEST_CASE("input: control characters in arguments are escaped in every usage error") {
    const std::string nasty = "12\n34\033]0;owned\007\033[2J";
    check_one_line_usage_error(run_program(run_all({"--no-build", "--frob" + nasty})), "unknown option");
    check_one_line_usage_error(run_program(run_all({"--no-build", "--only", nasty})), "takes experiment numbers");
    check_one_line_usage_error(run_program({program_path("02"), "--port", nasty}), "bad port '12\\n34\\x1b]0;owned");
    check_one_line_usage_error(run_program({tool_path("tcp_client"), "--port", "9", "--addr", nasty}), "bad address");
    check_one_line_usage_error(run_program({tool_path("tcp_server"), "--port", nasty}), "bad port");
    check_one_line_usage_error(run_program({tool_path("socket_states"), nasty}), "bad port");
    check_one_line_usage_error(run_program({tool_path("portreuse-summary"), "--" + nasty}), "unknown option");
    check_one_line_usage_error(run_program({tool_path("portreuse-summary"), "/nonexistent/" + nasty}), "cannot open");
  }

  TEST_CASE("input: PORTREUSE_PRESET must name a configure preset and never a path") {
    const fs::path outside = fs::path(PORTREUSE_SOURCE_DIR).parent_path() / "portreuse-preset-escape";
    std::error_code ignored;
    fs::remove_all(outside, ignored);
    for (const auto& preset : {std::string("../../portreuse-preset-escape"), std::string("base"), std::string("quick"),
                               std::string("nosuch"), std::string("default\n")}) {
      CAPTURE(preset);
      const auto result = run_program(run_all({"--only", "01"}, {"PORTREUSE_PRESET=" + preset}));
      check_one_line_usage_error(result, "is not a configure preset of CMakePresets.json");
    }
    CHECK_FALSE(fs::exists(outside));
  }

  TEST_CASE("input: the summary tool reads only a regular record file of bounded size") {
    ScratchDir scratch;
    const auto summary = tool_path("portreuse-summary");
    // Not a record: exit status 2 and one line, never a table that "matched".
    const auto fifo = (scratch.path / "fifo").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto big = scratch.path / "big.jsonl";
    { std::ofstream file(big); }
    fs::resize_file(big, (std::uintmax_t{16} << 20) + 1);
    write_file(scratch.path / "json-but-not-a-step.jsonl", "{\"a\":\"b\"}\n");
    write_file(scratch.path / "bad-number.jsonl", record_line("1", "x", "article", "holds"));
    write_file(scratch.path / "bad-said.jsonl", record_line("01", "x", "rumour", "holds"));
    for (const auto& path :
         {std::string("/etc/passwd"), std::string("/etc"), std::string("/dev/zero"), std::string("/dev/null"), fifo,
          big.string(), (scratch.path / "json-but-not-a-step.jsonl").string(),
          (scratch.path / "bad-number.jsonl").string(), (scratch.path / "bad-said.jsonl").string()}) {
      CAPTURE(path);
      const auto started = std::chrono::steady_clock::now();
      const auto result = run_program({summary, "--no-color", path}, Millis(5000));
      CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
      CHECK(result.status.code == 2);
      CHECK(result.out.find("matched") == std::string::npos);
      CHECK(result.err == first_line(result.err) + "\n");
    }
  }

  TEST_CASE("input: the summary says when no step ran and never that every outcome matched") {
    ScratchDir scratch;
    const auto empty = scratch.path / "empty.jsonl";
    write_file(empty, "");
    const auto result = run_program({tool_path("portreuse-summary"), "--no-color", empty.string()});
    CHECK(result.status.code == 1);
    CHECK(result.out.find("No step ran") != std::string::npos);
    CHECK(result.out.find("matched") == std::string::npos);

    const auto none_observed = scratch.path / "could-not-run.jsonl";
    write_file(none_observed,
               "{\"experiment\":\"02\",\"step\":\"restart\",\"said\":\"article\",\"call\":\"bind\","
               "\"outcome\":\"could-not-run\",\"why\":\"socket -> EMFILE\"}\n");
    const auto failed = run_program({tool_path("portreuse-summary"), "--no-color", none_observed.string()});
    CHECK(failed.status.code == 0);
    CHECK(failed.out.find("Could not run: 1") != std::string::npos);
    CHECK(failed.out.find("No step ran to an outcome") != std::string::npos);
    CHECK(failed.out.find("matched") == std::string::npos);
  }

  TEST_CASE("input: the summary counts only what an article said and fits 80 columns") {
    ScratchDir scratch;
    const auto record = scratch.path / "mixed.jsonl";
    write_file(record, record_line("02", "restart-after-server-close", "article", "holds") +
                           record_line("04", "restart-while-child-holds-connection-reuseaddr", "article",
                                       "depends-on-platform") +
                           record_line("05", "our-reading", "inference", "inference-holds") +
                           record_line("05", "our-other\033[2Jreading", "inference", "inference-does-not-hold"));
    const auto result = run_program({tool_path("portreuse-summary"), "--no-color", record.string()});
    CHECK(result.status.code == 0);
    CHECK(widest_line(result.out) <= 80);
    CHECK(result.out.find("2 claims of the articles. Holds here: 1.") != std::string::npos);
    CHECK(result.out.find("\nDepends on the platform: 1.") != std::string::npos);
    CHECK(result.out.find("2 readings. Hold here: 1. Do not hold here: 1.") != std::string::npos);
    CHECK(result.out.find('\033') == std::string::npos);
    CHECK(result.out.find("our-other\\x1b[2Jreading") != std::string::npos);
    // The readings come after the articles' claims, under their own heading.
    CHECK(result.out.find("our-reading") > result.out.find("Our readings of the articles"));
  }

  TEST_CASE("input: tcp_client shows what the server sends with its control characters escaped") {
    auto listener = open_socket(AF_INET);
    REQUIRE(listener.has_value());
    REQUIRE_FALSE(bind_to(listener->get(), *Endpoint::parse("127.0.0.1", 0)));
    REQUIRE_FALSE(listen_on(listener->get()));
    const auto server = local_endpoint(listener->get());
    REQUIRE(server.has_value());
    // A server that answers with escape sequences: clear the screen, retitle the terminal.
    std::thread answering([&] {
      auto accepted = accept_within(listener->get(), Millis(5000));
      if (!accepted) return;
      (void)receive_within(accepted->fd.get(), Millis(2000));
      const std::string answer = "\033[2J\033]0;owned\007HELLO\r\n";
      (void)::send(accepted->fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
    });
    const auto result =
        run_program({tool_path("tcp_client"), "--no-color", "--port", std::to_string(server->port()), "hello"});
    answering.join();
    CHECK(result.status.code == 0);
    CHECK(result.out.find('\033') == std::string::npos);
    CHECK(result.out.find('\007') == std::string::npos);
    CHECK(result.out.find("answer: \"\\x1b[2J\\x1b]0;owned\\x07HELLO\"") != std::string::npos);
  }

  TEST_CASE("input: run-all writes no temporary file and leaves no record behind") {
    ScratchDir private_tmp;
    const auto build_dir = fs::path(PORTREUSE_BIN_DIR).parent_path();
    // JSON mode needs no record: an unusable TMPDIR does not matter.
    const auto json = run_program(run_all({"--no-build", "--json", "--only", "01"}, {"TMPDIR=/nonexistent"}));
    CHECK(json.status.code == 0);
    CHECK_FALSE(json.out.empty());
    // A narrated run keeps its record unlinked: nothing is left in TMPDIR or in the build.
    const auto before = files_starting(build_dir, ".portreuse-run.");
    const auto narrated =
        run_program(run_all({"--no-build", "--no-color", "--only", "01"}, {"TMPDIR=" + private_tmp.path.string()}));
    CHECK(narrated.status.code == 0);
    CHECK(narrated.out.find("Summary: what the articles claim") != std::string::npos);
    CHECK(private_tmp.entries().empty());
    CHECK(files_starting(build_dir, ".portreuse-run.") == before);

    // SIGKILL in the middle of a run cannot leave the record behind either.
    for (const int delay_ms : {50, 150, 400}) {
      CAPTURE(delay_ms);
      const auto tag = unique_run_tag();
      auto argv = run_all({"--no-build", "--no-color"}, {"TMPDIR=" + private_tmp.path.string()});
      argv.insert(argv.begin() + 1, "PORTREUSE_RUN_TAG=" + tag);
      auto child = ChildProcess::fork_running([&]() -> int {
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
        ::dup2(null, STDERR_FILENO);
        return exec_program(argv);
      });
      REQUIRE(child.has_value());
      std::this_thread::sleep_for(Millis(delay_ms));
      ::kill(child->pid(), SIGKILL);
      CHECK(child->wait_for_exit(Millis(5000)).has_value());
      // The experiment that was running ends with its own lifetime; wait for it, then look.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
      while (!processes_tagged(tag).empty() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(Millis(50));
      }
      CHECK(private_tmp.entries().empty());
      CHECK(files_starting(build_dir, ".portreuse-run.") == before);
    }
  }

  TEST_CASE("input: with loopback down run-all says so once before any program and claims nothing") {
    const auto probe = run_command({"/usr/bin/unshare", "-Urn", "/bin/true"}, Millis(5000));
    if (!probe || probe->status.code != 0) {
      MESSAGE("user and network namespaces are not available here; nothing to check");
      return;
    }
    const auto result =
        run_program({"/usr/bin/unshare", "-Urn", "/usr/bin/env", std::string("PORTREUSE_BIN_DIR=") + PORTREUSE_BIN_DIR,
                     run_all_path(), "--no-build", "--no-color"});
    CHECK(result.status.code == 1);
    CHECK(result.err == first_line(result.err) + "\n");
    CHECK(result.err.find("loopback") != std::string::npos);
    CHECK(result.err.find("could not run") != std::string::npos);
    CHECK(result.out.find("Experiment ") == std::string::npos);
    CHECK(result.out.find("matched") == std::string::npos);
  }

  TEST_CASE("input: a program that cannot run is reported after its own message and nothing is claimed") {
    // A stand-in for experiment 01 that fails the way a real one does: its message, exit 1.
    ScratchDir bin;
    const auto entry = read_manifest().front();
    const auto fake = bin.path / (entry.number + "-" + entry.slug);
    write_file(fake, "#!/bin/sh\necho \"$(basename \"$0\"): cannot run: the stand-in says so\" >&2\nexit 1\n");
    fs::permissions(fake, fs::perms::owner_all);
    fs::create_symlink(tool_path("portreuse-summary"), bin.path / "portreuse-summary");
    const auto result = run_program({"/usr/bin/env", "PORTREUSE_BIN_DIR=" + bin.path.string(), run_all_path(),
                                     "--no-build", "--no-color", "--only", entry.number});
    CHECK(result.status.code == 1);
    CHECK(result.out.find("No step ran") != std::string::npos);
    CHECK(result.out.find("matched") == std::string::npos);
    // Its message first, then run-all's, each on a line of its own.
    const auto own = result.err.find("the stand-in says so\n");
    const auto summary = result.err.find("run-all.sh: these experiments could not run: " + entry.number);
    REQUIRE(own != std::string::npos);
    REQUIRE(summary != std::string::npos);
    CHECK(own < summary);
    CHECK(result.err.back() == '\n');
  }
}

}  // namespace
}  // namespace portreuse::testing
