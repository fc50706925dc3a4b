// Unit tests of the shared library: naming, parsing, ports, processes, and how a verdict and an
// explanation are chosen from an observed outcome.
#include <doctest/doctest.h>

#include <csignal>

#include "portreuse/child.hpp"
#include "portreuse/cli.hpp"
#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse {
namespace {

TEST_CASE("errors: outcomes are named like the man pages name them") {
  CHECK(outcome_name({}) == "ok");
  CHECK(outcome_name(make_error(EADDRINUSE)) == "EADDRINUSE");
  CHECK(outcome_name(make_error(EADDRNOTAVAIL)) == "EADDRNOTAVAIL");
  CHECK(describe_outcome(make_error(EADDRINUSE)) == "EADDRINUSE (Address already in use)");
  CHECK(errno_name(99999) == "errno 99999");
  CHECK(parse_outcome("EADDRINUSE") == make_error(EADDRINUSE));
  CHECK(parse_outcome("ok") == std::error_code{});
  CHECK_FALSE(parse_outcome("EWHATEVER").has_value());
}

TEST_CASE("endpoints: addresses parse and print and wildcard and loopback are recognised") {
  struct Row {
    const char* address;
    const char* text;
    bool wildcard;
    bool loopback;
  };
  for (const Row& row : {Row{"0.0.0.0", "0.0.0.0:80", true, false}, Row{"127.0.0.2", "127.0.0.2:80", false, true},
                         Row{"::", "[::]:80", true, false}, Row{"[::1]", "[::1]:80", false, true},
                         Row{"::ffff:127.0.0.1", "[::ffff:127.0.0.1]:80", false, true},
                         Row{"192.0.2.1", "192.0.2.1:80", false, false}}) {
    CAPTURE(row.address);
    const auto endpoint = Endpoint::parse(row.address, 80);
    REQUIRE(endpoint.has_value());
    CHECK(endpoint->text() == row.text);
    CHECK(endpoint->is_wildcard() == row.wildcard);
    CHECK(endpoint->is_loopback() == row.loopback);
  }
  for (const char* bad : {"", "localhost", "256.0.0.1", "1.2.3", "::g"}) {
    CAPTURE(bad);
    CHECK_FALSE(Endpoint::parse(bad, 80).has_value());
  }
  CHECK(Endpoint::parse_with_port("127.0.0.1:9999")->text() == "127.0.0.1:9999");
  CHECK(Endpoint::parse_with_port("[::1]:9999")->text() == "[::1]:9999");
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "::1:80", "127.0.0.1:8x"}) {
    CAPTURE(bad);
    CHECK_FALSE(Endpoint::parse_with_port(bad).has_value());
  }
}

TEST_CASE("ports: arguments from 1 to 65535 in digits only") {
  CHECK(parse_port("1") == std::uint16_t{1});
  CHECK(parse_port("65535") == std::uint16_t{65535});
  for (const char* bad : {"0", "65536", "-1", "abc", "", "12a", "999999", " 80"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_port(bad).has_value());
  }
}

TEST_CASE("ports: the free port from the kernel is free and bindable on the wildcard address") {
  auto port = free_tcp_port();
  REQUIRE(port.has_value());
  auto holders = sockets_holding(*port);
  REQUIRE(holders.has_value());
  CHECK(holders->empty());
  auto socket = open_socket(AF_INET);
  REQUIRE(socket.has_value());
  CHECK_FALSE(bind_to(socket->get(), *Endpoint::parse("0.0.0.0", *port)));
}

TEST_CASE("options: describe names exactly the options that are set") {
  CHECK(SocketOptions{}.describe() == "no options");
  CHECK(SocketOptions{.reuse_address = 1}.describe() == "SO_REUSEADDR=1");
  CHECK(SocketOptions{.reuse_address = 0}.describe() == "SO_REUSEADDR=0");
  CHECK(SocketOptions{.reuse_address = 1, .reuse_port = 1}.describe() == "SO_REUSEADDR=1, SO_REUSEPORT=1");
}

TEST_CASE("cli: flags and values and bad input") {
  const CommandLine cli("prog", "[--port P]", "", {{"--port", "P", "port"}, {"--json", "", "json"}});
  const char* good[] = {"prog", "--port", "80", "--json"};
  const auto parsed = cli.parse(4, good);
  REQUIRE(std::holds_alternative<ParsedArgs>(parsed));
  CHECK(std::get<ParsedArgs>(parsed).value("--port") == "80");
  CHECK(std::get<ParsedArgs>(parsed).has("--json"));
  const char* inline_value[] = {"prog", "--port=81"};
  CHECK(std::get<ParsedArgs>(cli.parse(2, inline_value)).value("--port") == "81");

  struct Bad {
    std::vector<const char*> argv;
    const char* message;
  };
  for (const auto& bad : {Bad{{"prog", "--frobnicate"}, "unknown option --frobnicate"},
                          Bad{{"prog", "--port"}, "option --port needs a value (P)"},
                          Bad{{"prog", "--json=1"}, "option --json takes no value"},
                          Bad{{"prog", "stray"}, "unexpected argument 'stray'"}}) {
    const auto result = cli.parse(static_cast<int>(bad.argv.size()), bad.argv.data());
    REQUIRE(std::holds_alternative<UsageError>(result));
    CHECK(std::get<UsageError>(result).message == bad.message);
  }
  CHECK(cli.usage().find("Usage: prog [--port P]") == 0);
}

TEST_CASE("json: written objects read back with escapes") {
  JsonObject object;
  object.add("step", "a \"quoted\"\nline").add("port", 40123).add("ok", true).add_raw("list", "[\"x\",\"y\"]");
  const auto text = object.text();
  CHECK(text.find('\n') == std::string::npos);
  const auto parsed = parse_flat_json(text);
  REQUIRE(parsed.has_value());
  CHECK(parsed->at("step") == "a \"quoted\"\nline");
  CHECK(parsed->at("port") == "40123");
  CHECK(parsed->at("ok") == "true");
  CHECK(parsed->at("list") == "[\"x\",\"y\"]");
  CHECK(json_string_array({}) == "[]");
  CHECK(json_string_array({"a", "b \"c\""}) == "[\"a\",\"b \\\"c\\\"\"]");
  CHECK(json_array({"1", "{}"}) == "[1,{}]");
  CHECK_FALSE(parse_flat_json("not json").has_value());
  CHECK_FALSE(parse_flat_json("{\"a\":1} trailing").has_value());
}

TEST_CASE("child process: exit status and signals and reaping on destruction") {
  auto exits = ChildProcess::fork_running([] { return 7; });
  REQUIRE(exits.has_value());
  const auto status = exits->wait_for_exit();
  REQUIRE(status.has_value());
  CHECK(status->exited);
  CHECK(status->code == 7);

  auto sleeper = ChildProcess::fork_running([] {
    ::pause();
    return 0;
  });
  REQUIRE(sleeper.has_value());
  CHECK_FALSE(sleeper->wait_for_exit(Millis(20)).has_value());
  REQUIRE_FALSE(sleeper->send_signal(SIGINT));
  const auto ended = sleeper->wait_for_exit();
  REQUIRE(ended.has_value());
  CHECK(ended->describe() == "ended by SIGINT");

  pid_t forgotten = 0;
  {
    auto left_running = ChildProcess::fork_running([] {
      ::pause();
      return 0;
    });
    REQUIRE(left_running.has_value());
    forgotten = left_running->pid();
  }
  CHECK(::kill(forgotten, 0) == -1);  // killed and reaped: not even a zombie is left
}

TEST_CASE("run_command: captures output and kills what overruns its deadline") {
  auto echo = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, Millis(5000));
  REQUIRE(echo.has_value());
  CHECK(echo->out == "out\n");
  CHECK(echo->err == "err\n");
  CHECK(echo->status.code == 3);
  auto hang = run_command({"/bin/sleep", "30"}, Millis(100));
  REQUIRE(hang.has_value());
  CHECK(hang->timed_out);
}

}  // namespace
}  // namespace portreuse
