// The classroom tools (tcp_server, tcp_client, socket_states) as a person meets them outside tmux:
// --help, bad input, plain explanations of refused connections, a forked child that keeps the
// port after Ctrl+C, and socket_states' JSON. The two-terminal walkthrough itself is in
// terminal_test.cpp.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <csignal>

#include "portreuse/child.hpp"
#include "portreuse/diagnosis.hpp"
#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

struct BadInput {
  const char* tool;
  std::vector<std::string> arguments;
  const char* message;  // what the first line of stderr must say
};

const std::vector<BadInput> kBadInput{
    {"tcp_server", {"--frobnicate"}, "unknown option --frobnicate"},
    {"tcp_server", {}, "missing --port P"},
    {"tcp_server", {"--port", "0"}, "bad port '0'"},
    {"tcp_server", {"--port", "99999"}, "bad port '99999'"},
    {"tcp_server", {"--port", "9999", "--addr", "nowhere"}, "bad address 'nowhere'"},
    {"tcp_server", {"--port", "9999", "stray"}, "unexpected argument 'stray'"},
    {"tcp_client", {}, "missing --port P"},
    {"tcp_client", {"--port"}, "option --port needs a value"},
    {"tcp_client", {"--port", "9999", "--addr", "192.0.2.1"}, "is not loopback"},
    {"tcp_client", {"--port", "9999", "--bind", "here"}, "bad --bind 'here'"},
    {"tcp_client", {"--port", "9999", "--addr", "::1", "--bind", "127.0.0.1:0"}, "different address families"},
    {"socket_states", {}, "missing PORT"},
    {"socket_states", {"abc"}, "bad port 'abc'"},
    {"socket_states", {"9999", "9998"}, "unexpected argument '9998'"},
    {"socket_states", {"9999", "--count", "3"}, "--count needs --watch"},
    {"socket_states", {"9999", "--watch", "--count", "0"}, "bad count '0'"},
};

TEST_CASE("tools: --help works and bad input gets one line and exit status 2") {
  for (const char* tool : {"tcp_server", "tcp_client", "socket_states"}) {
    CAPTURE(tool);
    const auto help = run_program({tool_path(tool), "--help"});
    CHECK(help.status.code == 0);
    CHECK(help.out.find(std::string("Usage: ") + tool) == 0);
  }
  for (const auto& bad : kBadInput) {
    CAPTURE(bad.tool);
    CAPTURE(bad.message);
    std::vector<std::string> argv{tool_path(bad.tool)};
    argv.insert(argv.end(), bad.arguments.begin(), bad.arguments.end());
    const auto result = run_program(argv);
    CHECK(result.status.exited);
    CHECK(result.status.code == 2);
    CHECK(result.out.empty());
    const auto first_line = result.err.substr(0, result.err.find('\n'));
    CHECK(first_line.find(bad.message) != std::string::npos);
    // One line, and where the help is: not the whole usage.
    CHECK(result.err == first_line + "\n");
    CHECK(first_line.find(std::string(bad.tool) + " --help") != std::string::npos);
  }
}

TEST_CASE("tools: output to a pipe carries no colour codes") {
  const auto port = free_tcp_port();
  REQUIRE(port.has_value());
  const auto client = run_program({tool_path("tcp_client"), "--port", std::to_string(*port), "hi"});
  const auto table = run_program({tool_path("socket_states"), std::to_string(*port)});
  CHECK(client.err.find('\033') == std::string::npos);
  CHECK(table.out.find('\033') == std::string::npos);
}

TEST_CASE("tools: a refused connection is named and explained") {
  const auto port = free_tcp_port();
  REQUIRE(port.has_value());
  const auto p = std::to_string(*port);
  const auto result = run_program({tool_path("tcp_client"), "--port", p, "hello"});
  CHECK(result.status.code == 1);
  CHECK(result.err.find("tcp_client: connect 127.0.0.1:" + p + ": ECONNREFUSED (Connection refused)") == 0);
  CHECK(result.err.find("Nothing listens on 127.0.0.1:" + p) != std::string::npos);
}

// A tool running in the background, its standard input kept open and its output collected, so
// that a test can act between its lines as a person in another terminal would.
class Background {
 public:
  static Background start(const std::vector<std::string>& argv) {
    std::array<int, 2> output{};
    std::array<int, 2> input{};
    REQUIRE(::pipe2(output.data(), O_CLOEXEC) == 0);
    REQUIRE(::pipe2(input.data(), O_CLOEXEC) == 0);
    auto child = ChildProcess::fork_running([&]() -> int {
      ::dup2(input[0], STDIN_FILENO);
      ::dup2(output[1], STDOUT_FILENO);
      ::dup2(output[1], STDERR_FILENO);
      return exec_program(argv);
    });
    ::close(output[1]);
    ::close(input[0]);
    REQUIRE(child.has_value());
    return Background(std::move(child.value()), UniqueFd(output[0]), UniqueFd(input[1]));
  }

  // Reads the output until it shows `needle`; false when it did not within the deadline.
  bool wait_for(const std::string& needle, Millis deadline = kDefaultDeadline) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (seen_.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !output_) return false;
      auto got = receive_or_read(left);
      if (!got) return false;
      seen_ += *got;
    }
    return true;
  }

  void type(const std::string& line) const { (void)!::write(input_.get(), line.data(), line.size()); }
  void end_input() { input_.reset(); }
  ChildProcess& process() { return process_; }
  [[nodiscard]] const std::string& seen() const { return seen_; }

 private:
  Background(ChildProcess process, UniqueFd output, UniqueFd input)
      : process_(std::move(process)), output_(std::move(output)), input_(std::move(input)) {}

  std::optional<std::string> receive_or_read(Millis deadline) {
    if (wait_readable(output_.get(), deadline)) return std::nullopt;
    std::array<char, 4096> buffer{};
    const auto count = ::read(output_.get(), buffer.data(), buffer.size());
    if (count <= 0) {
      output_.reset();
      return std::nullopt;
    }
    return std::string(buffer.data(), static_cast<std::size_t>(count));
  }

  ChildProcess process_;
  UniqueFd output_;
  UniqueFd input_;
  std::string seen_;
};

TEST_CASE("tools: after Ctrl+C a forked child that keeps the connection blocks the restart and is named") {
  const auto port = free_tcp_port();
  REQUIRE(port.has_value());
  const auto p = std::to_string(*port);
  auto server = Background::start({tool_path("tcp_server"), "--port", p, "--fork"});
  REQUIRE_MESSAGE(server.wait_for("listening on 0.0.0.0:" + p), server.seen());
  // --close-first: at the end the client leaves at once instead of waiting for the child to close.
  auto client = Background::start({tool_path("tcp_client"), "--port", p, "--close-first"});
  client.type("first line\n");
  REQUIRE_MESSAGE(client.wait_for("answer: \"FIRST LINE\""), client.seen());
  REQUIRE_MESSAGE(server.wait_for("forked child "), server.seen());

  REQUIRE(!server.process().send_signal(SIGINT));
  const auto ended = server.process().wait_for_exit();
  REQUIRE(ended.has_value());
  CHECK(ended->exited);
  CHECK(ended->code == 0);

  const auto restart = run_program({tool_path("tcp_server"), "--port", p});
  CHECK(restart.status.code == 1);
  CHECK(restart.err.find("tcp_server: bind 0.0.0.0:" + p + ": EADDRINUSE (Address already in use)") == 0);
  CHECK(restart.err.find("ESTAB      127.0.0.1:" + p) != std::string::npos);
  CHECK(restart.err.find("tcp_server)") != std::string::npos);
  CHECK(restart.err.find("Nothing listens on the port any more") != std::string::npos);

  // The client leaves; the child that served it ends by itself.
  client.end_input();
  REQUIRE_MESSAGE(client.wait_for("closed\n", Millis(6000)), client.seen());
  const auto client_ended = client.process().wait_for_exit();
  REQUIRE(client_ended.has_value());
  CHECK(client_ended->code == 0);
}

TEST_CASE("tools: socket_states --json lists a listener with its owner") {
  auto listener = open_socket(AF_INET);
  REQUIRE(listener.has_value());
  REQUIRE(!bind_to(listener->get(), *Endpoint::parse("127.0.0.1", 0)));
  REQUIRE(!listen_on(listener->get()));
  const auto port = local_endpoint(listener->get())->port();
  const auto result = run_program({tool_path("socket_states"), std::to_string(port), "--json"});
  CHECK(result.status.code == 0);
  const auto snapshot = parse_flat_json(result.out.substr(0, result.out.find('\n')));
  REQUIRE(snapshot.has_value());
  CHECK(snapshot->at("port") == std::to_string(port));
  CHECK(snapshot->at("count") == "1");
  const auto& sockets = snapshot->at("sockets");
  CHECK(sockets.find("\"state\":\"LISTEN\"") != std::string::npos);
  CHECK(sockets.find("\"local\":\"127.0.0.1:" + std::to_string(port) + "\"") != std::string::npos);
  CHECK(sockets.find("\"pid\":" + std::to_string(::getpid())) != std::string::npos);
}

TEST_CASE("diagnosis: which bound addresses a bind() is checked against") {
  struct Row {
    const char* attempted;
    const char* bound;
    bool overlap;
  };
  for (const Row& row :
       {Row{"0.0.0.0", "127.0.0.1", true}, Row{"127.0.0.1", "0.0.0.0", true}, Row{"127.0.0.1", "127.0.0.1", true},
        Row{"127.0.0.1", "127.0.0.2", false}, Row{"::", "127.0.0.1", true}, Row{"127.0.0.1", "::ffff:127.0.0.1", true},
        Row{"::1", "127.0.0.1", false}}) {
    CAPTURE(row.attempted);
    CAPTURE(row.bound);
    CHECK(addresses_overlap(*Endpoint::parse(row.attempted, 80), *Endpoint::parse(row.bound, 80)) == row.overlap);
  }
}

TEST_CASE("diagnosis: a live listener is named with its pid") {
  auto listener = open_socket(AF_INET);
  REQUIRE(listener.has_value());
  REQUIRE(!bind_to(listener->get(), *Endpoint::parse("0.0.0.0", 0)));
  REQUIRE(!listen_on(listener->get()));
  const auto port = local_endpoint(listener->get())->port();
  auto second = open_socket(AF_INET);
  REQUIRE(second.has_value());
  const auto attempted = *Endpoint::parse("127.0.0.1", port);
  const auto outcome = bind_to(second->get(), attempted);
  REQUIRE(outcome.value() == EADDRINUSE);
  const auto diagnosis = diagnose_bind_failure(attempted, {}, outcome);
  CHECK(diagnosis.situation == "listener");
  REQUIRE(diagnosis.holders.size() == 1);
  REQUIRE(diagnosis.holders[0].owner.has_value());
  CHECK(diagnosis.holders[0].owner->pid == ::getpid());
  CHECK(diagnosis.reason.find("pid " + std::to_string(::getpid())) != std::string::npos);
  CHECK(diagnosis.sockets.size() == 1);
}

}  // namespace
}  // namespace portreuse::testing
