// portreuse-doctor names the right class for each way a bind() can fail. Every case is built
// for real inside a private user and network namespace (so fixed ports and sysctls are safe there
// and the host is never touched), then the real program is run in that namespace with --json and
// without, and its class, its evidence and its 80 columns are checked. Where namespaces are not
// permitted the case is skipped and says why.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "port_doctor.hpp"
#include "portreuse/child.hpp"
#include "portreuse/event_pipe.hpp"
#include "portreuse/json.hpp"
#include "portreuse/netns.hpp"
#include "portreuse/socket_table.hpp"
#include "test_support.hpp"

#ifdef __linux__
#include <grp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#endif

namespace portreuse::testing {
namespace {

using doctor::PortClass;

// Inside the namespaces: the ephemeral range is shrunk so that 8080 lies outside it and 40500
// inside, whatever the host's range is.
constexpr const char* kRange = "40000 40999";
constexpr std::uint16_t kServerPort = 8080;
constexpr std::uint16_t kEphemeralPort = 40500;

// What the body inside the namespace reports back: each kind once.
using Reports = std::map<std::string, NamespaceEvent>;

// ------------------------------------------------------------------ scenario building blocks
// They run inside the namespace and return the socket or the errno of the call that failed.

Result<UniqueFd> bound_socket(const char* address, std::uint16_t port, Transport transport, bool listen_too,
                              bool reuse_address = false, bool reuse_port = false, std::optional<int> v6only = {}) {
  const auto endpoint = Endpoint::parse(address, port);
  if (!endpoint) return make_error(EINVAL);
  const int type = (transport == Transport::tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
  const int fd = ::socket(endpoint->family(), type, 0);
  if (fd < 0) return last_error();
  UniqueFd owned(fd);
  const int on = 1;
  if (reuse_address && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) return last_error();
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) return last_error();
  if (v6only && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &*v6only, sizeof *v6only) != 0) return last_error();
  if (::bind(fd, endpoint->raw(), endpoint->raw_length()) != 0) return last_error();
  if (listen_too && ::listen(fd, 8) != 0) return last_error();
  return owned;
}

Result<UniqueFd> listener(const char* address, std::uint16_t port, bool reuse_address = false, bool reuse_port = false,
                          std::optional<int> v6only = {}) {
  return bound_socket(address, port, Transport::tcp, true, reuse_address, reuse_port, v6only);
}

// A connected pair over loopback: the client's socket and the accepted one.
struct Pair {
  UniqueFd client;
  UniqueFd accepted;
  std::uint16_t client_port = 0;
};

Result<Pair> connect_pair(int listening, std::uint16_t port) {
  auto client = open_socket(AF_INET);
  if (!client) return client.error();
  if (auto error = connect_within(client->get(), *Endpoint::parse("127.0.0.1", port))) return error;
  auto accepted = accept_within(listening);
  if (!accepted) return accepted.error();
  auto local = local_endpoint(client->get());
  if (!local) return local.error();
  return Pair{std::move(*client), std::move(accepted->fd), local->port()};
}

// Waits until a TIME-WAIT socket with this local port is in the table (the close handshake
// takes a moment): the case exists only once the kernel shows it.
std::error_code wait_for_time_wait(std::uint16_t port) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto table = read_socket_table();
    if (!table) return table.error();
    for (const auto& entry : bound_to_port(*table, port)) {
      if (entry.is(TcpState::time_wait)) return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return make_error(ETIMEDOUT);
}

// One side closes first, the other reads the end of stream and closes: TIME-WAIT on the side that
// closed first.
std::error_code close_in_order(Pair& pair, bool server_first) {
  UniqueFd& first = server_first ? pair.accepted : pair.client;
  UniqueFd& second = server_first ? pair.client : pair.accepted;
  first.reset();
  if (auto error = wait_for_end_of_stream(second.get())) return error;
  second.reset();
  return {};
}

// ------------------------------------------------------------------ running the doctor

// Runs portreuse-doctor in the calling (namespaced) process's network, reports the JSON
// ("json"), the widest line of the text output ("width") and both exit statuses.
void run_doctor(const NamespaceReporter& reporter, const std::vector<std::string>& arguments) {
  std::vector<std::string> argv{tool_path("portreuse-doctor")};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  auto json_argv = argv;
  json_argv.emplace_back("--json");
  const auto json = run_command(json_argv, Millis(10000));
  if (!json) {
    reporter.report("json", json.error(), "could not start portreuse-doctor");
    return;
  }
  reporter.report("json", json->status.exited && json->status.code == 0 ? std::error_code{} : make_error(EIO),
                  json->out + " " + json->err);
  const auto text = run_command(argv, Millis(10000));
  if (!text) {
    reporter.report("width", text.error(), "could not start portreuse-doctor");
    return;
  }
  std::size_t widest = 0;
  std::size_t column = 0;
  for (const char character : text->out) {
    if (character == '\n') {
      widest = std::max(widest, column);
      column = 0;
    } else if ((static_cast<unsigned char>(character) & 0xc0U) != 0x80U) {
      ++column;
    }
  }
  reporter.report("width", text->status.exited && text->status.code == 0 ? std::error_code{} : make_error(EIO),
                  std::to_string(widest));
  reporter.report("text", {}, text->out);
}

struct CaseResult {
  std::optional<std::string> skipped;
  Reports reports;
  std::map<std::string, std::string> json;  // the doctor's flat fields; nested ones as raw text
};

// Runs the doctor with these arguments, while the scenario's sockets and processes still exist.
using Doctor = std::function<void(const std::vector<std::string>&)>;

// Runs `scenario` in a fresh user and network namespace with the ephemeral range of kRange and
// the extra sysctls. The scenario builds its case, calls the doctor, and then lets its sockets
// and children go (their destructors close and reap them); a call that fails reports "setup".
CaseResult run_case(const std::vector<std::pair<std::string, std::string>>& sysctls,
                    const std::function<void(const NamespaceReporter&, const Doctor&)>& scenario) {
  NamespacePlan plan;
  plan.sysctls = {{"net.ipv4.ip_local_port_range", kRange}};
  plan.sysctls.insert(plan.sysctls.end(), sysctls.begin(), sysctls.end());
  plan.deadline = Millis(20000);
  CaseResult result;
  auto run = run_in_network_namespace(plan, [&](const NamespaceReporter& reporter) {
    scenario(reporter, [&](const std::vector<std::string>& arguments) {
      reporter.report("pid", {}, std::to_string(::getpid()));
      run_doctor(reporter, arguments);
    });
    return 0;
  });
  REQUIRE_MESSAGE(run.has_value(), "could not start the namespace: " << describe_outcome(run.error()));
  if (run->unavailable) {
    result.skipped = run->unavailable;
    return result;
  }
  CHECK_FALSE(run->timed_out);
  for (const auto& event : run->events) {
    if (!event.setup) result.reports[event.kind] = event;
  }
  if (const auto skip = result.reports.find("skip"); skip != result.reports.end()) {
    result.skipped = skip->second.detail + " (" + skip->second.outcome + ")";
    return result;
  }
  if (const auto setup = result.reports.find("setup"); setup != result.reports.end()) {
    FAIL("the scenario could not be built: " << setup->second.detail << " " << setup->second.outcome);
  }
  const auto json = result.reports.find("json");
  REQUIRE_MESSAGE(json != result.reports.end(), "the doctor did not run");
  INFO("doctor --json: " << json->second.detail);
  REQUIRE(json->second.ok());
  auto parsed = parse_flat_json(json->second.detail.substr(0, json->second.detail.rfind('}') + 1));
  REQUIRE_MESSAGE(parsed.has_value(), "not one JSON object");
  result.json = *parsed;
  const auto width = result.reports.find("width");
  REQUIRE(width != result.reports.end());
  CHECK(width->second.ok());
  CHECK_MESSAGE(std::stoul(width->second.detail) <= 80, "a line is wider than 80 columns: " << width->second.detail);
  return result;
}

// Reports a failed setup call from inside the namespace. No IPv6 in the namespace is a reason
// to skip, not a failure.
void setup_failed(const NamespaceReporter& reporter, std::string_view call, std::error_code error) {
  const bool no_ipv6 = error.value() == EAFNOSUPPORT;
  reporter.report(no_ipv6 ? "skip" : "setup", error, std::string(call) + (no_ipv6 ? ": no IPv6 here" : ""));
}

// The trial with exactly these options, from the JSON's "trials" array, as its outcome name.
std::string trial_outcome(const CaseResult& result, const std::string& options) {
  const auto& trials = result.json.at("trials");
  const auto at = trials.find("\"options\":\"" + options + "\"");
  if (at == std::string::npos) return "missing";
  const auto outcome = trials.find("\"outcome\":\"", at);
  if (outcome == std::string::npos) return "missing";
  const auto start = outcome + 11;
  return trials.substr(start, trials.find('"', start) - start);
}

#define SKIP_IF_UNAVAILABLE(result)              \
  do {                                           \
    if ((result).skipped) {                      \
      MESSAGE("skipped: " << *(result).skipped); \
      return;                                    \
    }                                            \
  } while (false)

std::string slug(PortClass kind) {
  return std::string(doctor::class_slug(kind));
}

// ------------------------------------------------------------------ the cases

TEST_CASE("doctor: a free port outside the ephemeral range is free") {
  const auto result =
      run_case({}, [](const NamespaceReporter&, const Doctor& doctor) { doctor({std::to_string(kServerPort)}); });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::free));
  CHECK(trial_outcome(result, "no options") == "ok");
  CHECK(result.json.at("in_ephemeral_range") == "false");
}

TEST_CASE("doctor: a free port inside ip_local_port_range is ephemeral-range") {
  const auto result =
      run_case({}, [](const NamespaceReporter&, const Doctor& doctor) { doctor({std::to_string(kEphemeralPort)}); });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::ephemeral_range));
  CHECK(result.json.at("in_ephemeral_range") == "true");
  CHECK(result.json.at("fix").find("ip_local_reserved_ports=" + std::to_string(kEphemeralPort)) != std::string::npos);
}

TEST_CASE("doctor: a port in ip_local_reserved_ports is reserved") {
  const auto result =
      run_case({{"net.ipv4.ip_local_reserved_ports", std::to_string(kEphemeralPort)}},
               [](const NamespaceReporter&, const Doctor& doctor) { doctor({std::to_string(kEphemeralPort)}); });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::reserved));
  CHECK(result.json.at("in_reserved_ports") == "true");
}

TEST_CASE("doctor: a live listener is named with its pid and command line") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = listener("0.0.0.0", kServerPort);
    if (!held) return setup_failed(reporter, "listen 0.0.0.0:8080", held.error());
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::listener));
  CHECK(result.json.at("sockets").find("\"pid\":" + result.reports.at("pid").detail) != std::string::npos);
  CHECK(result.json.at("sockets").find("\"placement\":\"host\"") != std::string::npos);
  CHECK(result.json.at("sockets").find("\"command_line\":\"") != std::string::npos);
  CHECK(trial_outcome(result, "SO_REUSEADDR") == "EADDRINUSE");
  CHECK(result.reports.at("text").detail.find("Class: listener") != std::string::npos);
}

// A process that signals `ready` once body has built its socket, then waits to be killed (the
// ChildProcess destructor kills and reaps it when the scenario ends).
Result<ChildProcess> holder_process(const std::function<bool()>& body) {
  std::array<int, 2> ready{};
  if (::pipe2(ready.data(), O_CLOEXEC) != 0) return last_error();
  UniqueFd ready_read(ready[0]);
  UniqueFd ready_write(ready[1]);
  auto child = ChildProcess::fork_running([&]() {
    if (!body()) return 10;
    (void)!::write(ready_write.get(), "r", 1);
    ::sleep(20);
    return 0;
  });
  if (!child) return child.error();
  ready_write.reset();
  if (auto error = wait_readable(ready_read.get(), Millis(3000))) return error;
  return child;
}

TEST_CASE("doctor: a listener in another mount namespace is placed in a container") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    // The holder leaves the mount namespace, as a container's process has, then listens.
    std::optional<UniqueFd> held;
    auto holder = holder_process([&]() {
      if (::unshare(CLONE_NEWNS) != 0) return false;
      auto socket = listener("0.0.0.0", kServerPort);
      if (!socket) return false;
      held = std::move(*socket);
      return true;
    });
    if (!holder) return setup_failed(reporter, "holder in its own mount namespace", holder.error());
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::listener));
  CHECK(result.json.at("sockets").find("\"placement\":\"container\"") != std::string::npos);
  CHECK(result.json.at("sockets").find("mount namespace differs") != std::string::npos);
}

TEST_CASE("doctor: a listener started by socket activation is seen through LISTEN_FDS") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = listener("0.0.0.0", kServerPort);
    if (!held) return setup_failed(reporter, "listen 0.0.0.0:8080", held.error());
    // As systemd does: the listening socket as descriptor 3, LISTEN_FDS=1 and LISTEN_PID set to
    // the pid of the program that gets it, then exec.
    auto service = ChildProcess::fork_running([&]() {
      // dup2() onto itself keeps close-on-exec, so descriptor 3 may need it cleared by hand.
      if (held->get() == 3 ? ::fcntl(3, F_SETFD, 0) != 0 : ::dup2(held->get(), 3) != 3) return 10;
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
      ::execl("/bin/sleep", "sleep", "20", static_cast<char*>(nullptr));
      return 11;
    });
    if (!service) return setup_failed(reporter, "fork", service.error());
    held->reset();
    // The exec has happened once /proc shows the new program's name.
    const auto comm = "/proc/" + std::to_string(service->pid()) + "/comm";
    bool exec_seen = false;
    for (int attempt = 0; attempt < 400 && !exec_seen; ++attempt) {
      std::array<char, 64> name{};
      const int fd = ::open(comm.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        const auto got = ::read(fd, name.data(), name.size() - 1);
        ::close(fd);
        exec_seen = got > 0 && std::string_view(name.data()).rfind("sleep", 0) == 0;
      }
      if (!exec_seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exec_seen) return setup_failed(reporter, "exec /bin/sleep", make_error(ETIMEDOUT));
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::listener));
  CHECK(result.json.at("sockets").find("\"listen_fds\":\"1\",\"listen_pid\":\"") != std::string::npos);
  CHECK(result.json.at("fix").find("socket activation") != std::string::npos);
}

TEST_CASE("doctor: 127.0.0.1 held and 0.0.0.0 wanted is a wildcard overlap") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = listener("127.0.0.1", kServerPort, true);
    if (!held) return setup_failed(reporter, "listen 127.0.0.1:8080", held.error());
    doctor({std::to_string(kServerPort), "--addr", "0.0.0.0"});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::wildcard_overlap));
  CHECK(trial_outcome(result, "SO_REUSEADDR") == "EADDRINUSE");
}

TEST_CASE("doctor: the IPv6 wildcard with IPV6_V6ONLY=0 held and 0.0.0.0 wanted is dual-stack") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = listener("::", kServerPort, false, false, 0);
    if (!held) return setup_failed(reporter, "listen [::]:8080 IPV6_V6ONLY=0", held.error());
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::dual_stack));
  CHECK(result.json.at("sockets").find("\"v6only\":false") != std::string::npos);
}

TEST_CASE("doctor: 0.0.0.0 held and the IPv6 wildcard wanted is dual-stack and IPV6_V6ONLY=1 passes") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = listener("0.0.0.0", kServerPort);
    if (!held) return setup_failed(reporter, "listen 0.0.0.0:8080", held.error());
    doctor({std::to_string(kServerPort), "--addr", "::"});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::dual_stack));
  CHECK(trial_outcome(result, "IPV6_V6ONLY=1") == "ok");
}

TEST_CASE("doctor: a SO_REUSEPORT group of the same user is joinable") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    std::vector<UniqueFd> group;
    for (int member = 0; member < 2; ++member) {
      auto held = listener("0.0.0.0", kServerPort, false, true);
      if (!held) return setup_failed(reporter, "listen 0.0.0.0:8080 SO_REUSEPORT", held.error());
      group.push_back(std::move(*held));
    }
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::reuseport_group));
  CHECK(trial_outcome(result, "SO_REUSEPORT") == "ok");
}

// A server on 127.0.0.1:8080 answers one client; `server_first` says who closes first. The
// listener is gone before the doctor runs. Returns the client's port, or 0 after a failure.
std::uint16_t one_closed_connection(const NamespaceReporter& reporter, bool reuse_address, bool server_first) {
  auto server = listener("127.0.0.1", kServerPort, reuse_address);
  if (!server) {
    setup_failed(reporter, "listen 127.0.0.1:8080", server.error());
    return 0;
  }
  auto pair = connect_pair(server->get(), kServerPort);
  if (!pair) {
    setup_failed(reporter, "connect/accept", pair.error());
    return 0;
  }
  const auto client_port = pair->client_port;
  if (auto error = close_in_order(*pair, server_first)) {
    setup_failed(reporter, "close in order", error);
    return 0;
  }
  server->reset();
  if (auto error = wait_for_time_wait(server_first ? kServerPort : client_port)) {
    setup_failed(reporter, "TIME-WAIT in the table", error);
    return 0;
  }
  return client_port;
}

TEST_CASE("doctor: TIME-WAIT of a server that closed first without SO_REUSEADDR") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    if (one_closed_connection(reporter, false, true) != 0) doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::time_wait));
  CHECK(result.json.at("side") == "server");
  CHECK(std::stod(result.json.at("time_wait_seconds_left")) > 0);
  CHECK(trial_outcome(result, "SO_REUSEADDR") == "EADDRINUSE");
}

TEST_CASE("doctor: TIME-WAIT of a server that set SO_REUSEADDR: the trial with it passes") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    if (one_closed_connection(reporter, true, true) != 0) {
      doctor({std::to_string(kServerPort), "--addr", "127.0.0.1"});
    }
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::time_wait));
  CHECK(trial_outcome(result, "no options") == "EADDRINUSE");
  CHECK(trial_outcome(result, "SO_REUSEADDR") == "ok");
}

TEST_CASE("doctor: TIME-WAIT on a client's ephemeral port") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    if (const auto client_port = one_closed_connection(reporter, false, false)) doctor({std::to_string(client_port)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::time_wait));
  CHECK(result.json.at("side") == "client");
  CHECK(result.json.at("in_ephemeral_range") == "true");
}

TEST_CASE("doctor: an outgoing connection holds a port of the ephemeral range") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto server = listener("127.0.0.1", kServerPort);
    if (!server) return setup_failed(reporter, "listen 127.0.0.1:8080", server.error());
    auto pair = connect_pair(server->get(), kServerPort);
    if (!pair) return setup_failed(reporter, "connect/accept", pair.error());
    doctor({std::to_string(pair->client_port)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::connection));
  CHECK(result.json.at("side") == "client");
}

TEST_CASE("doctor: an accepted connection that outlives its listener") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto server = listener("127.0.0.1", kServerPort);
    if (!server) return setup_failed(reporter, "listen 127.0.0.1:8080", server.error());
    auto pair = connect_pair(server->get(), kServerPort);
    if (!pair) return setup_failed(reporter, "connect/accept", pair.error());
    server->reset();  // the listener goes; the accepted connection stays
    doctor({std::to_string(kServerPort)});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::connection));
  CHECK(result.json.at("side") == "server");
}

TEST_CASE("doctor: a bound UDP socket holds a UDP port") {
  const auto result = run_case({}, [](const NamespaceReporter& reporter, const Doctor& doctor) {
    auto held = bound_socket("0.0.0.0", kServerPort, Transport::udp, false);
    if (!held) return setup_failed(reporter, "bind UDP 0.0.0.0:8080", held.error());
    doctor({std::to_string(kServerPort), "--udp"});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::listener));
  CHECK(result.json.at("transport") == "udp");
}

TEST_CASE("doctor: an address no interface has is address-not-local") {
  const auto result = run_case({}, [](const NamespaceReporter&, const Doctor& doctor) {
    doctor({std::to_string(kServerPort), "--addr", "192.0.2.1"});
  });
  SKIP_IF_UNAVAILABLE(result);
  CHECK(result.json.at("class") == slug(PortClass::address_not_local));
  CHECK(trial_outcome(result, "no options") == "EADDRNOTAVAIL");
}

#ifdef __linux__
// Cases that need two users in one network namespace. An unprivileged user namespace maps a
// single uid, so these run only as root: in a network namespace of their own (no user
// namespace), where a child drops to uid 65534 ("nobody") for its part of the case.
constexpr uid_t kOtherUid = 65534;

bool drop_to_other_user() {
  return ::setgroups(0, nullptr) == 0 && ::setgid(kOtherUid) == 0 && ::setuid(kOtherUid) == 0;
}

// Runs the doctor as uid 65534, when that user may execute it (a build under a private home
// directory may not be reachable: then the case is skipped, with the reason).
int doctor_as_other_user(const NamespaceReporter& reporter, const std::vector<std::string>& arguments) {
  if (!drop_to_other_user()) return 10;
  if (::access(tool_path("portreuse-doctor").c_str(), X_OK) != 0) {
    reporter.report("unavailable", last_error(), "uid 65534 may not run " + tool_path("portreuse-doctor"));
    return 3;
  }
  run_doctor(reporter, arguments);
  return 0;
}

// Forks a child that enters a new network namespace, brings lo up, and runs body with a
// reporter; collects what it reported. nullopt (after a MESSAGE) when the case cannot run here.
std::optional<std::map<std::string, PipeEvent>> run_as_root_in_own_network(
    const std::function<void(const NamespaceReporter&)>& body) {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs a second uid in one network namespace, which only root can set up");
    return std::nullopt;
  }
  std::array<int, 2> reports{};
  REQUIRE(::pipe2(reports.data(), O_CLOEXEC) == 0);
  UniqueFd read_end(reports[0]);
  UniqueFd write_end(reports[1]);
  auto child = ChildProcess::fork_running([&]() {
    read_end.reset();
    const NamespaceReporter reporter(write_end.get());
    if (::unshare(CLONE_NEWNET) != 0) {
      reporter.report("unavailable", last_error(), "unshare(CLONE_NEWNET)");
      return 3;
    }
    const UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq request{};
    std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", "lo");
    if (!control || ::ioctl(control.get(), SIOCGIFFLAGS, &request) != 0) {
      reporter.report("setup", last_error(), "SIOCGIFFLAGS lo");
      return 1;
    }
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    if (::ioctl(control.get(), SIOCSIFFLAGS, &request) != 0) {
      reporter.report("setup", last_error(), "SIOCSIFFLAGS lo up");
      return 1;
    }
    body(reporter);
    return 0;
  });
  REQUIRE(child.has_value());
  write_end.reset();
  PipeEventReader events(std::move(read_end));
  std::map<std::string, PipeEvent> seen;
  while (auto event = events.next(Millis(20000))) seen[event->kind] = *event;
  child->wait_for_exit(Millis(3000));
  if (seen.count("unavailable") != 0) {
    MESSAGE("skipped: " << seen["unavailable"].detail << " " << seen["unavailable"].outcome);
    return std::nullopt;
  }
  REQUIRE_MESSAGE(seen.count("setup") == 0, seen["setup"].detail << " " << seen["setup"].outcome);
  REQUIRE(seen.count("json") == 1);
  CHECK(seen["json"].outcome == "ok");
  REQUIRE(seen.count("width") == 1);
  CHECK(std::stoul(seen["width"].detail) <= 80);
  return seen;
}

std::map<std::string, std::string> doctor_json(std::map<std::string, PipeEvent>& seen) {
  INFO("doctor --json: " << seen["json"].detail);
  const auto parsed = parse_flat_json(seen["json"].detail.substr(0, seen["json"].detail.rfind('}') + 1));
  REQUIRE(parsed.has_value());
  return *parsed;
}

TEST_CASE("doctor: another user's SO_REUSEPORT group") {
  auto seen = run_as_root_in_own_network([](const NamespaceReporter& reporter) {
    auto group = holder_process([]() {
      if (!drop_to_other_user()) return false;
      static std::vector<UniqueFd> members;  // in the holder process, which never returns
      for (int member = 0; member < 2; ++member) {
        auto held = listener("0.0.0.0", kServerPort, false, true);
        if (!held) return false;
        members.push_back(std::move(*held));
      }
      return true;
    });
    if (!group) return setup_failed(reporter, "the SO_REUSEPORT group of uid 65534", group.error());
    run_doctor(reporter, {std::to_string(kServerPort)});
  });
  if (!seen) return;
  const auto json = doctor_json(*seen);
  INFO("doctor --json: " << (*seen)["json"].detail);
  CHECK(json.at("class") == slug(PortClass::other_user_reuseport));
  CHECK(json.at("sockets").find("\"uid\":65534") != std::string::npos);
}

TEST_CASE("doctor: without root another user's listener shows its uid and no process") {
  auto seen = run_as_root_in_own_network([](const NamespaceReporter& reporter) {
    auto held = listener("0.0.0.0", kServerPort);
    if (!held) return setup_failed(reporter, "listen 0.0.0.0:8080", held.error());
    // The doctor runs as another user, who may not read root's /proc/PID/fd.
    auto doctor =
        ChildProcess::fork_running([&]() { return doctor_as_other_user(reporter, {std::to_string(kServerPort)}); });
    if (!doctor) return setup_failed(reporter, "fork", doctor.error());
    doctor->wait_for_exit(Millis(15000));
  });
  if (!seen) return;
  const auto json = doctor_json(*seen);
  INFO("doctor --json: " << (*seen)["json"].detail);
  CHECK(json.at("class") == slug(PortClass::listener));
  CHECK(json.at("sockets").find("\"uid\":0,") != std::string::npos);
  CHECK(json.at("sockets").find("\"processes\":[]") != std::string::npos);
  CHECK(std::stoi(json.at("unreadable_processes")) > 0);
  CHECK(json.at("unseen").find("without root") != std::string::npos);
  CHECK(json.at("fix").find("sudo portreuse-doctor") != std::string::npos);
}

TEST_CASE("doctor: a port below ip_unprivileged_port_start is privileged-port") {
  auto seen = run_as_root_in_own_network([](const NamespaceReporter& reporter) {
    auto doctor = ChildProcess::fork_running([&]() { return doctor_as_other_user(reporter, {"80"}); });
    if (!doctor) return setup_failed(reporter, "fork", doctor.error());
    doctor->wait_for_exit(Millis(15000));
  });
  if (!seen) return;
  const auto json = doctor_json(*seen);
  CHECK(json.at("class") == slug(PortClass::privileged_port));
  CHECK(trial_outcome(CaseResult{{}, {}, json}, "no options") == "EACCES");
}
#endif

// ------------------------------------------------------------------ the pieces, and the command line

TEST_CASE("doctor: sysctl parsing and overlap rules and escaping and wrapping") {
  const auto range = doctor::parse_port_range("32768\t60999");
  REQUIRE(range.has_value());
  CHECK(range->low == 32768);
  CHECK(range->high == 60999);
  CHECK_FALSE(doctor::parse_port_range("60999 32768").has_value());
  const auto list = doctor::parse_port_list("5000,8000-8010\n");
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK(list->at(1).contains(8005));
  CHECK(doctor::parse_port_list("")->empty());
  CHECK_FALSE(doctor::parse_port_list("9-1").has_value());

  const auto at = [](const char* address) { return *Endpoint::parse(address, 8080); };
  CHECK(doctor::overlap_of(at("0.0.0.0"), at("0.0.0.0")) == doctor::Overlap::same);
  CHECK(doctor::overlap_of(at("0.0.0.0"), at("127.0.0.1")) == doctor::Overlap::wildcard);
  CHECK(doctor::overlap_of(at("127.0.0.1"), at("127.0.0.2")) == doctor::Overlap::none);
  CHECK(doctor::overlap_of(at("0.0.0.0"), at("::")) == doctor::Overlap::dual_stack);
  CHECK(doctor::overlap_of(at("127.0.0.1"), at("::ffff:127.0.0.1")) == doctor::Overlap::same);
  CHECK(doctor::overlap_of(at("::1"), at("0.0.0.0")) == doctor::Overlap::none);

  CHECK(doctor::escape_for_terminal("ok \033[31mred\n") == "ok \\x1b[31mred\\x0a");
  CHECK(doctor::escape_for_terminal("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(doctor::escape_for_terminal("\xc2\x9b") == "\\xc2\\x9b");  // C1 CSI
  CHECK(doctor::escape_for_terminal("\xff") == "\\xff");
  for (const auto& row : doctor::wrap(std::string(200, 'x') + " short words here", 80)) CHECK(row.size() <= 80);
}

TEST_CASE("doctor: --help works and bad input gets one line with a pointer to --help and exit status 2") {
  const auto help = run_program({tool_path("portreuse-doctor"), "--help"});
  CHECK(help.status.code == 0);
  CHECK(help.out.rfind("Usage: portreuse-doctor PORT", 0) == 0);
  std::size_t widest = 0;
  std::size_t start = 0;
  while (start < help.out.size()) {
    const auto end = help.out.find('\n', start);
    widest = std::max(widest, (end == std::string::npos ? help.out.size() : end) - start);
    start = end == std::string::npos ? help.out.size() : end + 1;
  }
  CHECK(widest <= 80);
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad{
      {{}, "missing PORT"},
      {{"0"}, "bad port '0'"},
      {{"http"}, "bad port 'http'"},
      {{"8080", "9090"}, "unexpected argument '9090'"},
      {{"8080", "--addr", "localhost"}, "bad address 'localhost'"},
      {{"8080", "--addr"}, "option --addr needs a value"},
      {{"8080", "--frobnicate"}, "unknown option --frobnicate"},
      {{"8080", "--addr", "\033[2J"}, "bad address '\\x1b[2J'"},
  };
  for (const auto& row : bad) {
    const auto& arguments = row.first;
    const auto& message = row.second;
    CAPTURE(message);
    std::vector<std::string> argv{tool_path("portreuse-doctor")};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    const auto result = run_program(argv);
    CHECK(result.status.code == 2);
    CHECK(result.out.empty());
    CHECK(result.err.find('\n') == result.err.size() - 1);  // one line
    CHECK(result.err.find(message) != std::string::npos);
    CHECK(result.err.find("--help") != std::string::npos);
  }
}

}  // namespace
}  // namespace portreuse::testing
