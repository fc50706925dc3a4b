// The robustness suite (CTest label "robustness"): the real programs under interruption,
// repetition, bad input, foreign ports and resource failures. Every run is tagged through its
// environment so that anything it leaves behind can be found in /proc afterwards.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "portreuse/child.hpp"
#include "portreuse/json.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

std::string run_all_path() {
  return std::string(PORTREUSE_SOURCE_DIR) + "/scripts/run-all.sh";
}

std::vector<std::string> run_all(std::vector<std::string> arguments) {
  std::vector<std::string> argv{"/usr/bin/env", std::string("PORTREUSE_BIN_DIR=") + PORTREUSE_BIN_DIR, run_all_path(),
                                "--no-build"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  return argv;
}

// experiment/step=outcome lines: what a run taught, in order.
std::string outcomes_of(const std::string& json_lines) {
  std::string outcomes;
  std::istringstream lines(json_lines);
  std::string line;
  while (std::getline(lines, line)) {
    const auto record = parse_flat_json(line);
    if (!record) return "not JSON: " + line;
    outcomes += record->at("experiment") + "/" + record->at("step") + "=" + record->at("outcome") + "\n";
  }
  return outcomes;
}

// A program started in its own process group, output to a file, so that it can be interrupted
// while it runs, as Ctrl+C in a terminal would.
struct Interruptible {
  ChildProcess process;
  std::string output_path;
};

Interruptible start_in_background(const std::vector<std::string>& argv, const std::string& tag) {
  char path_template[] = "/tmp/portreuse-robustness-XXXXXX";
  const int output_fd = ::mkstemp(path_template);
  REQUIRE(output_fd >= 0);
  ::close(output_fd);
  const std::string output_path = path_template;
  std::vector<std::string> tagged{"/usr/bin/env", "PORTREUSE_RUN_TAG=" + tag};
  tagged.insert(tagged.end(), argv.begin(), argv.end());
  auto child = ChildProcess::fork_running([&]() -> int {
    const int out = ::open(output_path.c_str(), O_WRONLY | O_TRUNC);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    return exec_program(tagged);
  });
  REQUIRE(child.has_value());
  return {std::move(child.value()), output_path};
}

std::string slurp_and_remove(const std::string& path) {
  std::ifstream file(path);
  std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  ::unlink(path.c_str());
  return text;
}

TEST_SUITE("robustness") {
  TEST_CASE("robustness: the leftover detector sees a tagged process and its listener") {
    // The detector is what every other check here relies on: it must see a real leftover.
    const auto tag = unique_run_tag();
    auto port = free_tcp_port();
    REQUIRE(port.has_value());
    auto server = start_in_background({tool_path("tcp_server"), "--port", std::to_string(*port)}, tag);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (leftover_listeners({*port}, tag).empty() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(processes_tagged(tag) == std::vector<pid_t>{server.process.pid()});
    const auto listeners = leftover_listeners({*port}, tag);
    REQUIRE(listeners.size() == 1);
    CHECK(listeners.front().find("LISTEN") == 0);
    CHECK(listeners.front().find("pid " + std::to_string(server.process.pid())) != std::string::npos);

    server.process.kill_and_reap();
    slurp_and_remove(server.output_path);
    CHECK(processes_tagged(tag).empty());
    CHECK(leftover_listeners({*port}, tag).empty());
  }

  TEST_CASE("robustness: run-all leaves no process and no listener behind") {
    const auto result = run_program(run_all({"--json"}), Millis(60000));
    CHECK(result.status.code == 0);
    CHECK_FALSE(outcomes_of(result.out).empty());
  }

  TEST_CASE("robustness: Ctrl+C at 9 moments of run-all leaves nothing behind") {
    for (const int delay_ms : {0, 15, 40, 80, 150, 250, 400, 600, 900}) {
      CAPTURE(delay_ms);
      const auto tag = unique_run_tag();
      auto running = start_in_background(run_all({"--json"}), tag);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(-running.process.pid(), SIGINT);  // the terminal sends Ctrl+C to the whole foreground group
      // A signal that lands before exec() is not run-all's to see (the forked test process takes
      // it): run-all then finishes the whole run, which takes far longer than 10 s on a loaded
      // shared machine. The deadline only catches a run-all that does not stop.
      const auto ended = running.process.wait_for_exit(Millis(90000));
      REQUIRE_MESSAGE(ended.has_value(), "run-all did not stop after SIGINT");
      const bool interrupted = (ended->exited && ended->code == 130) || (!ended->exited && ended->signal == SIGINT);
      const bool finished_first = ended->exited && ended->code == 0;
      CHECK_MESSAGE((interrupted || finished_first), "run-all " << ended->describe());
      const auto output = slurp_and_remove(running.output_path);
      check_nothing_left(tag, ports_in(output));
    }
  }

  TEST_CASE("robustness: 20 back-to-back run-all runs teach the same outcomes") {
    std::string first;
    int differing = 0;
    for (int run = 0; run < 20; ++run) {
      CAPTURE(run);
      const auto result = run_program(run_all({"--json"}), Millis(60000));
      REQUIRE(result.status.code == 0);
      const auto outcomes = outcomes_of(result.out);
      if (run == 0) first = outcomes;
      if (outcomes != first) ++differing;
      CHECK_MESSAGE(outcomes == first, "run " << run << " differs from the first:\n"
                                              << outcomes << "first:\n"
                                              << first);
    }
    MESSAGE("20 runs, " << differing << " differing from the first");
  }

  TEST_CASE("robustness: run-all rejects bad input with one line and exit status 2") {
    struct Bad {
      std::vector<std::string> arguments;
      const char* message;
    };
    for (const auto& bad :
         {Bad{{"--frobnicate"}, "unknown option --frobnicate"}, Bad{{"--only"}, "option --only needs a value"},
          Bad{{"--only", "99"}, "unknown experiment '99'"}, Bad{{"--only", "1a"}, "takes experiment numbers"},
          Bad{{"--only", ","}, "empty item"}}) {
      CAPTURE(bad.message);
      auto arguments = bad.arguments;
      arguments.insert(arguments.begin(), "--json");
      const auto result = run_program(run_all(arguments));
      CHECK(result.status.code == 2);
      CHECK(result.out.empty());
      const auto first_line = result.err.substr(0, result.err.find('\n'));
      CHECK(first_line.find(bad.message) != std::string::npos);
      CHECK(result.err == first_line + "\n");
      CHECK(first_line.find("--help") != std::string::npos);
    }
  }

  TEST_CASE("robustness: a port held by someone else's listener is reported and never taught") {
    for (const auto& entry : read_manifest()) {
      CAPTURE(entry.number);
      auto port = free_tcp_port();
      REQUIRE(port.has_value());
      // Someone else's server: a process of this test, not of the experiment. It listens before
      // it is forked, so it is listening by the time the experiment looks.
      auto listener = open_socket(AF_INET);
      REQUIRE(listener.has_value());
      REQUIRE_FALSE(bind_to(listener->get(), *Endpoint::parse("0.0.0.0", *port)));
      REQUIRE_FALSE(listen_on(listener->get()));
      auto foreign = ChildProcess::fork_running([] {
        ::sleep(20);
        return 0;
      });
      REQUIRE(foreign.has_value());
      listener->reset();  // only the child holds it now
      const auto result = run_program({program_path(entry.number), "--json", "--port", std::to_string(*port)});
      CHECK(result.status.code == 1);
      CHECK(result.out.empty());
      CHECK(result.err.find("already in use") != std::string::npos);
      CHECK(result.err.find("LISTEN") != std::string::npos);
      CHECK(result.err.find("pid " + std::to_string(foreign->pid())) != std::string::npos);
    }
  }

  TEST_CASE("robustness: a port held by someone else's TIME_WAIT is reported and never taught") {
    for (const auto& entry : read_manifest()) {
      CAPTURE(entry.number);
      auto port = free_tcp_port();
      REQUIRE(port.has_value());
      {  // A connection this test closes first on the server side: a TIME_WAIT on the port.
        auto listener = open_socket(AF_INET);
        REQUIRE(listener.has_value());
        REQUIRE_FALSE(bind_to(listener->get(), *Endpoint::parse("127.0.0.1", *port)));
        REQUIRE_FALSE(listen_on(listener->get()));
        auto client = open_socket(AF_INET);
        REQUIRE(client.has_value());
        REQUIRE_FALSE(connect_within(client->get(), *Endpoint::parse("127.0.0.1", *port)));
        auto accepted = accept_within(listener->get());
        REQUIRE(accepted.has_value());
        accepted->fd.reset();
        REQUIRE_FALSE(wait_for_end_of_stream(client->get()));
      }
      const auto result = run_program({program_path(entry.number), "--json", "--port", std::to_string(*port)});
      CHECK(result.status.code == 1);
      CHECK(result.out.empty());
      CHECK(result.err.find("TIME-WAIT") != std::string::npos);
    }
  }

  TEST_CASE("robustness: with loopback down every experiment says so and exits 1") {
    // A new network namespace starts with its loopback interface down.
    const auto probe = run_command({"/usr/bin/unshare", "-Urn", "/bin/true"}, Millis(5000));
    if (!probe || probe->status.code != 0) {
      MESSAGE("user and network namespaces are not available here; nothing to check");
      return;
    }
    for (const auto& entry : read_manifest()) {
      CAPTURE(entry.number);
      const auto result = run_program({"/usr/bin/unshare", "-Urn", program_path(entry.number), "--json"});
      CHECK(result.status.code == 1);
      CHECK(result.out.empty());
      CHECK(result.err.find("loopback") != std::string::npos);
    }
    const auto result =
        run_program({"/usr/bin/unshare", "-Urn", "/usr/bin/env", std::string("PORTREUSE_BIN_DIR=") + PORTREUSE_BIN_DIR,
                     run_all_path(), "--no-build", "--no-color"});
    CHECK(result.status.code == 1);
    CHECK(result.err.find("could not run") != std::string::npos);
  }

  TEST_CASE("robustness: a client facing a server that accepts and never answers gives up in time") {
    auto listener = open_socket(AF_INET);
    REQUIRE(listener.has_value());
    REQUIRE_FALSE(bind_to(listener->get(), *Endpoint::parse("127.0.0.1", 0)));
    REQUIRE_FALSE(listen_on(listener->get()));  // the kernel completes the handshake; nobody answers
    const auto server = local_endpoint(listener->get());
    REQUIRE(server.has_value());
    const auto started = std::chrono::steady_clock::now();
    const auto result =
        run_program({tool_path("tcp_client"), "--port", std::to_string(server->port()), "hello"}, Millis(15000));
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(result.status.code == 1);
    CHECK(result.out.find("no answer within") != std::string::npos);
    CHECK(result.err.find("ETIMEDOUT") != std::string::npos);
    CHECK(waited < std::chrono::seconds(8));
  }

  TEST_CASE("robustness: the summary tool rejects bad input with one line and exit status 2") {
    for (const auto& arguments : std::vector<std::vector<std::string>>{{"--frobnicate"}, {}, {"a", "b"}}) {
      std::vector<std::string> argv{tool_path("portreuse-summary")};
      argv.insert(argv.end(), arguments.begin(), arguments.end());
      const auto result = run_program(argv);
      CHECK(result.status.code == 2);
      CHECK(result.out.empty());
      CHECK(result.err.find('\n') == result.err.size() - 1);
      CHECK(result.err.find("portreuse-summary --help") != std::string::npos);
    }
  }

  TEST_CASE("robustness: an experiment that runs out of file descriptors fails cleanly") {
    for (const auto& entry : read_manifest()) {
      for (const int limit : {6, 8, 10, 12, 14, 16}) {
        CAPTURE(entry.number);
        CAPTURE(limit);
        const auto result =
            run_program({"/bin/sh", "-c", "ulimit -n " + std::to_string(limit) + " && exec \"$0\" --json",
                         program_path(entry.number)});
        // Either it had enough descriptors (0), or it says what it could not do (1); never a crash.
        CHECK(result.status.exited);
        CHECK((result.status.code == 0 || result.status.code == 1));
        if (result.status.code == 1) CHECK_FALSE(result.err.empty());
      }
    }
  }
}

}  // namespace
}  // namespace portreuse::testing
