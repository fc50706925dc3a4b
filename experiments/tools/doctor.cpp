// portreuse-doctor: why would bind() of this address and port fail on this machine, now, and
// what is the smallest fix? For the engineer who meets "Address already in use" at work.
//
// It answers from evidence only: trial binds of scratch sockets with every combination of
// SO_REUSEADDR and SO_REUSEPORT, the kernel's socket table (sock_diag), the port sysctls, and
// /proc for the processes behind the sockets. It never listens, never connects, and changes
// nothing on the machine.
//
// Usage: portreuse-doctor PORT [--addr A] [--udp] [--json]
// See also: tools/port_doctor.hpp (the checks), lessons/doctor.md.
#include <iostream>
#include <string_view>
#include <variant>

#include "port_doctor.hpp"
#include "portreuse/cli.hpp"
#include "portreuse/ports.hpp"

namespace {

using namespace portreuse;

constexpr const char* kProgram = "portreuse-doctor";

// What the user typed, escaped and cut short, so that the one line stays within 80 columns.
std::string quoted(std::string_view typed) {
  auto text = doctor::escape_for_terminal(typed);
  if (text.size() > 24) text = text.substr(0, 21) + "...";
  return "'" + text + "'";
}

// Bad input: one line naming the problem and where to read more, exit status 2.
int bad_input(const std::string& message) {
  std::cerr << kProgram << ": " << message << " (try " << kProgram << " --help)\n";
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cli(kProgram, "PORT [--addr A] [--udp] [--json]",
                        "Says why a bind() of address A and PORT fails on this machine now, or would\n"
                        "fail, and the smallest fix: a live listener (which process, which user, in a\n"
                        "container or under systemd), TIME-WAIT only, an overlapping wildcard or IPv6\n"
                        "dual-stack socket, another user's SO_REUSEPORT group, a port inside the\n"
                        "ephemeral range or reserved, or a free port.\n"
                        "\n"
                        "Evidence: trial binds of scratch sockets (no options, SO_REUSEADDR,\n"
                        "SO_REUSEPORT, both; bind only, closed at once), the socket table (sock_diag),\n"
                        "net.ipv4.ip_local_port_range and ip_local_reserved_ports, and /proc. Without\n"
                        "root, other users' processes show their uid but no pid; other network\n"
                        "namespaces (containers) are never visible. Changes nothing.\n"
                        "\n"
                        "Exit status: 0 diagnosed (see the class), 1 could not run, 2 bad input.",
                        {{"--addr", "A", "the address to bind: 0.0.0.0 (default), ::, 127.0.0.1, ..."},
                         {"--udp", "", "a UDP socket instead of TCP"},
                         {"--json", "", "one JSON object: the class and all the evidence"}},
                        1);
  const auto parsed = cli.parse(argc, argv);
  if (const auto* error = std::get_if<UsageError>(&parsed)) {
    return bad_input(doctor::escape_for_terminal(error->message.substr(0, 60)));
  }
  const auto& args = std::get<ParsedArgs>(parsed);
  if (args.has("--help")) {
    std::cout << cli.usage();
    return 0;
  }
  if (args.positional.empty()) return bad_input("missing PORT");
  const auto port = parse_port(args.positional[0]);
  if (!port) return bad_input("bad port " + quoted(args.positional[0]) + " (want 1-65535)");
  const auto address_text = args.value("--addr").value_or("0.0.0.0");
  const auto attempted = Endpoint::parse(address_text, *port);
  if (!attempted) return bad_input("bad address " + quoted(address_text) + " (want an IP address)");
  const auto transport = args.has("--udp") ? Transport::udp : Transport::tcp;

  const auto diagnosis = doctor::diagnose(*attempted, transport);
  if (args.has("--json")) {
    std::cout << doctor::render_json(diagnosis) << "\n";
  } else {
    std::cout << doctor::render_text(diagnosis);
  }
  return diagnosis.kind == doctor::PortClass::could_not_run ? kExitCouldNotRun : 0;
}
