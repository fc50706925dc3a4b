// 15-bind-map: the bind-rule map of this kernel.
//
// Shows: which second bind() this kernel accepts on a port that a first socket already holds, for
// six local addresses (0.0.0.0, 127.0.0.1, the dual-stack ::, :: with IPV6_V6ONLY, ::1 and the
// v4-mapped ::ffff:127.0.0.1), first x second, with no option, SO_REUSEADDR on both or SO_REUSEPORT
// on both, and with the first socket only bound or already listening: 216 real bind() calls, one
// screen. The kernel selftest tools/testing/selftests/net/bind_wildcard.c covers the bound-only
// half; the listening half is where SO_REUSEADDR stops helping, and where real servers live.
//
// Articles: every article meets one cell of this map; "Port reuse So_Reuseaddr" (0.0.0.0, then
// 127.0.0.1 on the same port) most directly. Lesson: lessons/15-bind-map.md
//
// This program does not use the Step table of run_experiment: 216 cells would not fit it. The
// documented Linux rule is here only to mark the cells where this kernel differs from it; every
// outcome shown is the one bind() returned in this run.
//
// Usage: 15-bind-map [--port P] [--json] [--no-color] [--step] [--record FILE]
#include <sys/utsname.h>

#include <array>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "portreuse/child.hpp"
#include "portreuse/cli.hpp"
#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/narrator.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"

namespace {

using namespace portreuse;

// What an address receives connections for, in the terms the kernel compares bound addresses
// (inet_rcv_saddr_equal): two binds on one port overlap when their reaches share a bit.
enum Reach : unsigned {
  kIpv4Loopback = 1U,  // 127.0.0.1
  kIpv4Other = 2U,     // every other IPv4 address of the host
  kIpv6Loopback = 4U,  // ::1
  kIpv6Other = 8U,     // every other IPv6 address
};

struct Address {
  const char* key;    // in cell ids and JSON: "::v6only"
  const char* shown;  // in the grid: ":: V6ONLY"
  const char* text;   // what bind() is given
  int family;
  bool v6only;
  unsigned reach;
};

enum AddressIndex : std::size_t { any4, loopback4, any6, any6_only, loopback6, mapped_loopback4 };
constexpr std::size_t kAddresses = 6;

const std::array<Address, kAddresses> kAddressList{{
    {"0.0.0.0", "0.0.0.0", "0.0.0.0", AF_INET, false, kIpv4Loopback | kIpv4Other},
    {"127.0.0.1", "127.0.0.1", "127.0.0.1", AF_INET, false, kIpv4Loopback},
    // Without IPV6_V6ONLY the IPv6 wildcard also takes every IPv4 address (dual stack).
    {"::", "::", "::", AF_INET6, false, kIpv4Loopback | kIpv4Other | kIpv6Loopback | kIpv6Other},
    {"::v6only", ":: V6ONLY", "::", AF_INET6, true, kIpv6Loopback | kIpv6Other},
    {"::1", "::1", "::1", AF_INET6, false, kIpv6Loopback},
    // An IPv6 socket on a v4-mapped address receives IPv4 traffic for 127.0.0.1.
    {"::ffff:127.0.0.1", "::ffff:127.0.0.1", "::ffff:127.0.0.1", AF_INET6, false, kIpv4Loopback},
}};

enum class Sharing { none, reuse_address, reuse_port };
struct SharingInfo {
  Sharing sharing;
  const char* key;
  const char* shown;
};
const std::array<SharingInfo, 3> kSharings{{
    {Sharing::none, "none", "no option"},
    {Sharing::reuse_address, "reuseaddr", "SO_REUSEADDR"},
    {Sharing::reuse_port, "reuseport", "SO_REUSEPORT"},
}};

enum class FirstState { bound_only, listening };
struct StateInfo {
  FirstState state;
  const char* key;
  const char* heading;
  const char* preview;
};
const std::array<StateInfo, 2> kStates{{
    {FirstState::bound_only, "bound-only", "First socket bound, not listening (bind only)",
     "the first socket only binds; the second binds the same port (108 cells)"},
    {FirstState::listening, "listening", "First socket listening (bind, then listen)",
     "the first socket binds and listens; the second binds the same port (108 cells)"},
}};

struct Cell {
  std::size_t sharing = 0;
  std::size_t state = 0;
  std::size_t first = 0;
  std::size_t second = 0;

  [[nodiscard]] const Address& first_address() const { return kAddressList[first]; }
  [[nodiscard]] const Address& second_address() const { return kAddressList[second]; }
  [[nodiscard]] Sharing sharing_kind() const { return kSharings[sharing].sharing; }
  [[nodiscard]] FirstState first_state() const { return kStates[state].state; }
  [[nodiscard]] bool needs_ipv6() const {
    return first_address().family == AF_INET6 || second_address().family == AF_INET6;
  }
  [[nodiscard]] std::string block_id() const {
    return std::string("bind-map/") + kSharings[sharing].key + "/" + kStates[state].key;
  }
  [[nodiscard]] std::string id() const { return block_id() + "/" + first_address().key + "/" + second_address().key; }
};

// The documented Linux rule (net/ipv4/inet_connection_sock.c, inet_csk_bind_conflict): a bind
// conflicts with a socket on the same port whose address overlaps, unless both sockets set
// SO_REUSEADDR and the earlier one is not listening, or both set SO_REUSEPORT (same user).
// Used only to mark cells where this kernel differs; never shown as an outcome.
std::string documented_outcome(const Cell& cell) {
  if ((cell.first_address().reach & cell.second_address().reach) == 0) return "ok";
  switch (cell.sharing_kind()) {
    case Sharing::none: return "EADDRINUSE";
    case Sharing::reuse_address: return cell.first_state() == FirstState::listening ? "EADDRINUSE" : "ok";
    case Sharing::reuse_port: return "ok";
  }
  return "EADDRINUSE";
}

struct CellResult {
  std::string outcome;  // "ok", an errno name, "skipped" or "could-not-run"
  std::string why;      // for skipped and could-not-run
  std::uint16_t port = 0;
  std::string first_try;  // the outcome on the first port, when the cell had to be repeated
};

SocketOptions options_for(const Address& address, Sharing sharing) {
  SocketOptions options;
  if (sharing == Sharing::reuse_address) options.reuse_address = 1;
  if (sharing == Sharing::reuse_port) options.reuse_port = 1;
  // Set either way, so that the sysctl net.ipv6.bindv6only does not redraw the map.
  if (address.family == AF_INET6) options.ipv6_only = address.v6only ? 1 : 0;
  return options;
}

std::string family_name(int family) {
  return family == AF_INET6 ? "AF_INET6" : "AF_INET";
}

// The first socket could not take the port: that is not an outcome of the cell.
struct SetupProblem {
  std::string why;
  bool port_taken = false;  // the port is not free (someone else's socket): another port may work
};

using Attempt = std::variant<std::error_code, SetupProblem>;

// One cell for real: the first socket takes the port (and listens, if asked), the second binds it.
// Both sockets are closed on return; neither ever had a connection, so nothing stays behind.
Attempt attempt_cell(const Cell& cell, std::uint16_t port) {
  const auto sharing = cell.sharing_kind();
  const auto& first = cell.first_address();
  auto first_socket = open_socket(first.family);
  if (!first_socket) {
    return SetupProblem{"socket(" + family_name(first.family) + "): " + describe_outcome(first_socket.error())};
  }
  if (auto error = apply_options(first_socket->get(), options_for(first, sharing))) {
    return SetupProblem{"setsockopt on the first socket: " + describe_outcome(error)};
  }
  const auto first_endpoint = *Endpoint::parse(first.text, port);
  if (auto error = bind_to(first_socket->get(), first_endpoint)) {
    return SetupProblem{"the first socket's bind " + first_endpoint.text() + ": " + describe_outcome(error),
                        error.value() == EADDRINUSE || error.value() == EACCES};
  }
  if (cell.first_state() == FirstState::listening) {
    if (auto error = listen_on(first_socket->get())) {
      return SetupProblem{"the first socket's listen on " + first_endpoint.text() + ": " + describe_outcome(error),
                          error.value() == EADDRINUSE};
    }
  }
  const auto& second = cell.second_address();
  auto second_socket = open_socket(second.family);
  if (!second_socket) {
    return SetupProblem{"socket(" + family_name(second.family) + "): " + describe_outcome(second_socket.error())};
  }
  if (auto error = apply_options(second_socket->get(), options_for(second, sharing))) {
    return SetupProblem{"setsockopt on the second socket: " + describe_outcome(error)};
  }
  return bind_to(second_socket->get(), *Endpoint::parse(second.text, port));
}

// A port that no socket holds on any address a cell uses. The kernel picks it for a dual-stack
// [::]:0 bind, which overlaps every address of the map (and every other one, TIME_WAIT included),
// so the kernel's own conflict check does the work. Without IPv6 only the IPv4 cells run, and a
// 0.0.0.0:0 bind covers them the same way. No /proc/net read is needed, which matters 216 times
// over: free_tcp_port reads /proc/net/tcp and tcp6, milliseconds each.
Result<std::uint16_t> port_free_everywhere(bool have_ipv6) {
  auto probe = open_socket(have_ipv6 ? AF_INET6 : AF_INET);
  if (!probe) return probe.error();
  if (have_ipv6) {
    if (auto error = set_int_option(probe->get(), IPPROTO_IPV6, IPV6_V6ONLY, 0)) return error;
  }
  if (auto error = bind_to(probe->get(), *Endpoint::parse(have_ipv6 ? "::" : "0.0.0.0", 0))) return error;
  auto bound = local_endpoint(probe->get());
  if (!bound) return bound.error();
  return bound->port();
}

// Where the cells' ports come from: the user's --port while it serves, else a fresh port for
// each cell.
class PortPlan {
 public:
  PortPlan(std::optional<std::uint16_t> user_port, bool have_ipv6) : user_port_(user_port), have_ipv6_(have_ipv6) {
    if (!user_port_) return;
    if (auto holders = sockets_holding(*user_port_); holders && !holders->empty()) {
      std::string held;
      for (const auto& line : describe_holders(*holders)) held += (held.empty() ? "" : "; ") + line;
      give_up_user_port("port " + std::to_string(*user_port_) + " is not free (" + held + ")");
    }
  }

  Result<std::uint16_t> for_cell() {
    if (user_port_) return *user_port_;
    return fresh();
  }
  Result<std::uint16_t> fresh() const { return port_free_everywhere(have_ipv6_); }

  [[nodiscard]] bool is_user_port(std::uint16_t port) const { return user_port_ && *user_port_ == port; }

  void give_up_user_port(const std::string& why) {
    if (!user_port_) return;
    note_ = why +
            ": the cells use fresh ports from the kernel instead, so that whatever holds it does not "
            "decide any cell.";
    user_port_.reset();
  }

  [[nodiscard]] std::string description() const {
    if (user_port_) return "port " + std::to_string(*user_port_) + " for every cell (--port)";
    return "a fresh port from the kernel for each cell";
  }
  [[nodiscard]] const std::string& note() const { return note_; }

 private:
  std::optional<std::uint16_t> user_port_;
  bool have_ipv6_;
  std::string note_;
};

std::string could_not_get_port(const std::error_code& error) {
  return "no free port from the kernel: " + describe_outcome(error);
}

// Runs one cell on its port. A port that turned out to be taken is replaced (up to three times). A cell that differs
// from the documented rule is repeated once on a fresh port, so that a socket of some other program cannot pass for the
// kernel's rule; both outcomes are kept.
CellResult run_cell(const Cell& cell, std::uint16_t port, PortPlan& ports,
                    const std::optional<std::string>& ipv6_missing) {
  CellResult result;
  if (cell.needs_ipv6() && ipv6_missing) {
    result.outcome = "skipped";
    result.why = *ipv6_missing;
    return result;
  }
  const auto observe = [&](std::uint16_t on_port) -> std::variant<std::string, SetupProblem> {
    const auto attempt = attempt_cell(cell, on_port);
    if (const auto* problem = std::get_if<SetupProblem>(&attempt)) return *problem;
    return outcome_name(std::get<std::error_code>(attempt));
  };
  for (int tries = 0;; ++tries) {
    auto observed = observe(port);
    if (auto* outcome = std::get_if<std::string>(&observed)) {
      result.outcome = *outcome;
      result.port = port;
      break;
    }
    const auto& problem = std::get<SetupProblem>(observed);
    if (!problem.port_taken || tries == 3) {
      result.outcome = "could-not-run";
      result.why = problem.why;
      return result;
    }
    if (ports.is_user_port(port)) ports.give_up_user_port(problem.why);
    auto fresh = ports.fresh();
    if (!fresh) {
      result.outcome = "could-not-run";
      result.why = could_not_get_port(fresh.error());
      return result;
    }
    port = *fresh;
  }
  if (result.outcome == documented_outcome(cell)) return result;
  auto fresh = ports.fresh();
  if (!fresh) return result;
  auto repeated = observe(*fresh);
  if (auto* outcome = std::get_if<std::string>(&repeated)) {
    result.first_try = result.outcome;
    result.outcome = *outcome;
    result.port = *fresh;
  }
  return result;
}

// The 216 outcomes, indexed [sharing][state][first][second].
using Grid = std::array<std::array<std::array<std::array<CellResult, kAddresses>, kAddresses>, 2>, 3>;

const CellResult& at(const Grid& grid, const Cell& cell) {
  return grid[cell.sharing][cell.state][cell.first][cell.second];
}

// The cells of one half of the map (first socket bound only, or listening), in screen order.
std::vector<Cell> cells_of_state(std::size_t state) {
  std::vector<Cell> cells;
  for (std::size_t sharing = 0; sharing < kSharings.size(); ++sharing) {
    for (std::size_t first = 0; first < kAddresses; ++first) {
      for (std::size_t second = 0; second < kAddresses; ++second) cells.push_back(Cell{sharing, state, first, second});
    }
  }
  return cells;
}

bool ran(const CellResult& result) {
  return result.outcome != "skipped" && result.outcome != "could-not-run";
}

std::string kernel_name() {
  utsname name{};
  if (::uname(&name) != 0) return "this kernel";
  return std::string(name.sysname) + " " + name.release;
}

// --- the screen -------------------------------------------------------------------------------

struct Glyphs {
  const char* ok;
  const char* in_use;
  const char* skipped;
  const char* could_not_run;
  const char* differs;
};
constexpr Glyphs kUnicodeGlyphs{"\u2713", "\u2717", "\u00b7", "?", "!"};
constexpr Glyphs kAsciiGlyphs{".", "X", "-", "?", "!"};

class MapPrinter {
 public:
  MapPrinter(const Narrator& narrator, bool fancy)
      : narrator_(narrator), glyphs_(fancy ? kUnicodeGlyphs : kAsciiGlyphs) {}

  void block_group(const Grid& grid, std::size_t state) {
    std::cout << "\n  " << narrator_.paint(kStates[state].heading, Tone::heading) << "\n";
    std::string options_line = pad("  first \\ second", kLabelWidth);
    std::string numbers_line(kLabelWidth, ' ');
    for (const auto& sharing : kSharings) {
      options_line += pad(sharing.shown, kBlockWidth);
      for (std::size_t column = 0; column < kAddresses; ++column) numbers_line += std::to_string(column + 1) + "  ";
      numbers_line += std::string(kBlockWidth - 3 * kAddresses, ' ');
    }
    std::cout << narrator_.paint(trimmed(options_line), Tone::dim) << "\n"
              << narrator_.paint(trimmed(numbers_line), Tone::dim) << "\n";
    for (std::size_t first = 0; first < kAddresses; ++first) {
      std::string line = pad("  " + std::to_string(first + 1) + " " + kAddressList[first].shown, kLabelWidth);
      for (std::size_t sharing = 0; sharing < kSharings.size(); ++sharing) {
        for (std::size_t second = 0; second < kAddresses; ++second) {
          const Cell cell{sharing, state, first, second};
          line += symbol(cell, at(grid, cell));
        }
        line += std::string(kBlockWidth - 3 * kAddresses, ' ');
      }
      std::cout << trimmed(line) << "\n";
    }
  }

  // The key lists only what appears on the screen.
  void key() const {
    std::string text = "  " + narrator_.paint(glyphs_.ok, Tone::good) + " bind ok   " +
                       narrator_.paint(glyphs_.in_use, Tone::bad) + " EADDRINUSE";
    for (const auto& [name, letter] : letters_) text += "   " + narrator_.paint(letter, Tone::note) + " " + name;
    if (saw_skipped_) text += "   " + std::string(glyphs_.skipped) + " skipped";
    if (saw_could_not_run_) text += "   " + narrator_.paint(glyphs_.could_not_run, Tone::bad) + " could not run";
    if (saw_difference_)
      text += "   " + narrator_.paint(glyphs_.differs, Tone::note) + " differs from documented Linux";
    std::cout << "\n" << text << "\n";
  }

 private:
  static constexpr std::size_t kLabelWidth = 22;
  static constexpr std::size_t kBlockWidth = 19;

  static std::string pad(std::string text, std::size_t width) {
    if (text.size() < width) text.resize(width, ' ');
    return text;
  }
  static std::string trimmed(std::string text) {
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
  }

  // Three columns per cell: the outcome, a mark when it differs from the documented rule, a space.
  std::string symbol(const Cell& cell, const CellResult& result) {
    std::string mark = " ";
    std::string glyph;
    if (result.outcome == "skipped") {
      saw_skipped_ = true;
      return narrator_.paint(glyphs_.skipped, Tone::dim) + "  ";
    }
    if (result.outcome == "could-not-run") {
      saw_could_not_run_ = true;
      return narrator_.paint(glyphs_.could_not_run, Tone::bad) + "  ";
    }
    if (result.outcome != documented_outcome(cell)) {
      saw_difference_ = true;
      mark = narrator_.paint(glyphs_.differs, Tone::note);
    }
    if (result.outcome == "ok") {
      glyph = narrator_.paint(glyphs_.ok, Tone::good);
    } else if (result.outcome == "EADDRINUSE") {
      glyph = narrator_.paint(glyphs_.in_use, Tone::bad);
    } else {
      auto [found, added] =
          letters_.try_emplace(result.outcome, std::string(1, static_cast<char>('a' + letters_.size())));
      glyph = narrator_.paint(found->second, Tone::note);
    }
    return glyph + mark + " ";
  }

  const Narrator& narrator_;
  Glyphs glyphs_;
  std::map<std::string, std::string> letters_;  // other errno names -> a, b, c
  bool saw_skipped_ = false;
  bool saw_could_not_run_ = false;
  bool saw_difference_ = false;
};

// What the map shows, each sentence chosen by the observed cells it is about: when a cell did not
// give the outcome the sentence explains, the sentence is replaced by what the kernel did.
struct Reading {
  std::vector<Cell> cells;
  const char* text;  // true when every listed cell gave its documented outcome
};

std::string cell_reference(const Cell& cell) {
  return std::string(kSharings[cell.sharing].shown) + ", " + kStates[cell.state].key + ", " +
         std::to_string(cell.first + 1) + "->" + std::to_string(cell.second + 1);
}

void print_readings(const Narrator& narrator, const Grid& grid) {
  constexpr std::size_t none = 0, reuseaddr = 1, reuseport = 2, bound = 0, listening = 1;
  const std::vector<Reading> readings{
      {{{none, bound, any4, loopback4}, {none, bound, loopback4, any4}},
       "Wildcard and specific overlap: 0.0.0.0 holds the port on every IPv4 address, so 127.0.0.1 is refused "
       "in either order (1->2, 2->1)."},
      {{{none, bound, any6, any4}, {none, bound, any6_only, any4}},
       "The dual-stack :: also takes IPv4 (3->1 refused); with IPV6_V6ONLY it takes IPv6 only and 0.0.0.0 fits "
       "beside it (4->1)."},
      {{{none, bound, loopback4, mapped_loopback4}, {none, bound, mapped_loopback4, loopback6}},
       "::ffff:127.0.0.1 is 127.0.0.1 reached through an IPv6 socket: it conflicts with 127.0.0.1 (2->6), "
       "never with ::1 (6->5)."},
      {{{reuseaddr, bound, any4, loopback4}, {reuseaddr, listening, any4, loopback4}},
       "SO_REUSEADDR lets overlapping binds share the port only while the first socket is not listening: once "
       "it listens, the SO_REUSEADDR block equals the no-option block. So 0.0.0.0 listening, then 127.0.0.1, "
       "both with SO_REUSEADDR (\"Port reuse So_Reuseaddr\"), is refused here (1->2)."},
      {{{reuseport, listening, any4, any4}},
       "SO_REUSEPORT on both sockets (same user) lets the second bind even a listener's own address (1->1)."},
  };
  std::cout << "\n  "
            << narrator.paint("What the map shows (each line checked against the cells it names):", Tone::heading)
            << "\n";
  for (const auto& reading : readings) {
    std::string differing;
    bool skipped = false;
    for (const auto& cell : reading.cells) {
      const auto& result = at(grid, cell);
      if (result.outcome == "skipped") {
        skipped = true;
      } else if (result.outcome != documented_outcome(cell)) {
        differing += (differing.empty() ? "" : "; ") + cell_reference(cell) + " gave " + result.outcome +
                     " where the documented rule gives " + documented_outcome(cell);
      }
    }
    if (skipped) {
      narrator.paragraph("-", "(not shown: the cells it rests on need IPv6, which is not available here)", Tone::dim);
    } else if (!differing.empty()) {
      narrator.paragraph("-", "This kernel differs from the documented rule here: " + differing + ".", Tone::note);
    } else {
      narrator.paragraph("-", reading.text);
    }
  }
}

// One paragraph under the map: how many binds, how fast, on which ports, and how many cells
// differ from the documented rule (or had to be repeated).
void print_tally(const Narrator& narrator, const Grid& grid, int cells_run, long long busy_ms, const std::string& ports,
                 const char* differs_mark) {
  int differing = 0;
  int repeated = 0;
  for (std::size_t state = 0; state < kStates.size(); ++state) {
    for (const auto& cell : cells_of_state(state)) {
      const auto& result = at(grid, cell);
      if (!result.first_try.empty()) ++repeated;
      if (ran(result) && result.outcome != documented_outcome(cell)) ++differing;
    }
  }
  std::string tally = std::to_string(cells_run) + " real bind() calls on " + kernel_name() + " in " +
                      std::to_string(busy_ms) + " ms, " + ports + ". ";
  tally += differing == 0 ? std::string("Every cell gave the outcome the documented Linux rules predict.")
                          : std::to_string(differing) + " cell(s) differ from the documented Linux rules (marked " +
                                differs_mark + ").";
  if (repeated > 0) {
    tally += " " + std::to_string(repeated) +
             " cell(s) were repeated on a fresh port because their first outcome differed (--json shows both).";
  }
  narrator.paragraph("", tally, differing == 0 ? Tone::plain : Tone::note);
}

// --- records ----------------------------------------------------------------------------------

struct Counts {
  int ok = 0;
  int in_use = 0;
  int other = 0;
  int skipped = 0;
  int could_not_run = 0;

  void add(const std::string& outcome) {
    if (outcome == "ok") {
      ++ok;
    } else if (outcome == "EADDRINUSE") {
      ++in_use;
    } else if (outcome == "skipped") {
      ++skipped;
    } else if (outcome == "could-not-run") {
      ++could_not_run;
    } else {
      ++other;
    }
  }
  [[nodiscard]] std::string text() const {
    std::string words = std::to_string(ok) + " ok " + std::to_string(in_use) + " inuse";
    if (other > 0) words += " " + std::to_string(other) + " other";
    if (skipped > 0) words += " " + std::to_string(skipped) + " skipped";
    if (could_not_run > 0) words += " " + std::to_string(could_not_run) + " not-run";
    return words;
  }
};

JsonObject cell_record(const Cell& cell, const CellResult& result) {
  JsonObject record;
  record.add("experiment", "15")
      .add("step", cell.id())
      .add("call", "bind")
      .add("outcome", result.outcome)
      .add("expected", documented_outcome(cell));
  if (result.outcome != "skipped" && result.outcome != "could-not-run") {
    record.add("as_expected", result.outcome == documented_outcome(cell));
  }
  record.add("first", cell.first_address().key)
      .add("second", cell.second_address().key)
      .add("option", kSharings[cell.sharing].key)
      .add("first_state", kStates[cell.state].key)
      .add("port", static_cast<int>(result.port));
  if (!result.why.empty()) record.add("why", result.why);
  if (!result.first_try.empty()) record.add("first_try", result.first_try);
  return record;
}

// One record per block for --record (run-all's summary): the documented block against the observed
// one, as counts, with the verdict from a cell-by-cell comparison of the cells that ran.
JsonObject block_record(const Grid& grid, std::size_t sharing, std::size_t state) {
  Counts documented;
  Counts observed;
  std::vector<std::string> differing;
  bool every_cell_ran = true;
  for (std::size_t first = 0; first < kAddresses; ++first) {
    for (std::size_t second = 0; second < kAddresses; ++second) {
      const Cell cell{sharing, state, first, second};
      const auto& result = at(grid, cell);
      observed.add(result.outcome);
      if (result.outcome == "could-not-run") every_cell_ran = false;
      if (!ran(result)) continue;
      documented.add(documented_outcome(cell));
      if (result.outcome != documented_outcome(cell)) differing.push_back(cell.id());
    }
  }
  const bool as_documented = differing.empty() && every_cell_ran;
  const Cell any_cell{sharing, state, 0, 0};
  JsonObject record;
  record.add("experiment", "15")
      .add("step", any_cell.block_id())
      .add("call", "bind")
      .add("claimed", documented.text())
      .add("expected", documented.text())
      .add("outcome", observed.text())
      .add("as_expected", as_documented)
      .add("verdict", !every_cell_ran ? "could-not-run" : (as_documented ? "holds" : "does-not-hold"))
      .add("claim", std::string("The documented Linux bind rules give this block (") + kSharings[sharing].shown +
                        ", first socket " + kStates[state].key + ").")
      .add("source", "Linux kernel selftest tools/testing/selftests/net/bind_wildcard.c; inet_csk_bind_conflict()")
      .add("cells", static_cast<int>(kAddresses * kAddresses))
      .add_raw("differing", json_string_array(differing));
  return record;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string program = "15-bind-map";
  const CommandLine cli(
      program, "[--port P] [--json] [--no-color] [--step] [--record FILE]",
      "The bind-rule map of this kernel\n\n"
      "A first socket takes a port; a second socket binds the same port. Both come from the same six\n"
      "addresses (0.0.0.0, 127.0.0.1, ::, :: with IPV6_V6ONLY, ::1, ::ffff:127.0.0.1), with no option,\n"
      "SO_REUSEADDR on both or SO_REUSEPORT on both, and the first socket only bound or listening:\n"
      "216 real bind() calls, shown as one map. Cells that differ from the documented Linux rule are\n"
      "marked; every outcome shown is the one bind() returned in this run.\n\n"
      "Cell ids (--json): bind-map/OPTION/STATE/FIRST/SECOND, for example\n"
      "  bind-map/reuseaddr/listening/0.0.0.0/127.0.0.1   (OPTION none|reuseaddr|reuseport,\n"
      "  STATE bound-only|listening, :: with IPV6_V6ONLY is written ::v6only)\n"
      "--record writes one summary record per block (six), not per cell.",
      {{"--port", "P", "use port P for every cell while it is free (default: a fresh port per cell)"},
       {"--json", "", "print one JSON object per cell (JSON Lines, 216 of them) and nothing else"},
       {"--no-color", "", "no colours, plain ASCII (also when NO_COLOR is set or output is not a terminal)"},
       {"--step", "", "pause before each half of the map and wait for Enter (for a classroom)"},
       {"--record", "FILE", "append one summary record per block to FILE (run-all's summary reads it)"}});
  const auto parsed_or_exit = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed_or_exit)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed_or_exit);
  std::optional<std::uint16_t> user_port;
  if (auto text = args.value("--port")) {
    user_port = parse_port(*text);
    if (!user_port) return cli.usage_error(bad_port_message(*text));
  }
  std::ofstream record_file;
  if (auto path = args.value("--record")) {
    record_file.open(*path, std::ios::app);
    if (!record_file) return cli.usage_error("cannot write to '" + *path + "'");
  }
  const bool json = args.has("--json");
  const bool colour = colour_wanted(args.has("--no-color"), 1);
  const Narrator narrator(std::cout, !json, colour);

  install_interrupt_cleanup();
  // The same contract as every experiment: someone else's socket on --port is reported, not mapped.
  if (auto problem = preflight_problem(user_port)) {
    std::cerr << program << ": cannot run: " << *problem << "\n";
    return kExitCouldNotRun;
  }
  const auto ipv6_missing = ipv6_unavailable();
  PortPlan ports(user_port, !ipv6_missing);

  narrator.banner("15", "The bind-rule map of this kernel");
  narrator.paragraph("", "Rows: first socket's address. Columns: second socket's bind() on that port.");
  if (!json) {
    std::string legend;
    for (std::size_t index = 0; index < kAddresses; ++index) {
      legend += std::string(index == 0 ? "" : "  ") + std::to_string(index + 1) + " " + kAddressList[index].shown;
    }
    std::cout << "  " << narrator.paint(legend, Tone::dim) << "\n";
  }
  if (ipv6_missing) narrator.paragraph("IPv6:", *ipv6_missing + ": the cells that need IPv6 are skipped.", Tone::note);

  Grid grid;
  MapPrinter printer(narrator, colour);
  std::chrono::steady_clock::duration busy{};
  int cells_run = 0;
  bool every_cell_ran = true;
  for (std::size_t state = 0; state < kStates.size(); ++state) {
    if (args.has("--step")) narrator.pause(kStates[state].preview);
    const auto started = std::chrono::steady_clock::now();
    for (const auto& cell : cells_of_state(state)) {
      auto& result = grid[cell.sharing][cell.state][cell.first][cell.second];
      auto port = ports.for_cell();
      if (!port) {
        result.outcome = "could-not-run";
        result.why = could_not_get_port(port.error());
      } else {
        result = run_cell(cell, *port, ports, ipv6_missing);
      }
      if (result.outcome == "could-not-run") {
        every_cell_ran = false;
        std::cerr << program << ": cell " << cell.id() << " could not run: " << result.why << "\n";
      }
      if (ran(result)) ++cells_run;
    }
    busy += std::chrono::steady_clock::now() - started;
    if (json) {
      for (const auto& cell : cells_of_state(state)) std::cout << cell_record(cell, at(grid, cell)).text() << std::endl;
    } else {
      printer.block_group(grid, state);
    }
  }
  for (std::size_t sharing = 0; sharing < kSharings.size(); ++sharing) {
    for (std::size_t state = 0; state < kStates.size(); ++state) {
      if (record_file.is_open()) record_file << block_record(grid, sharing, state).text() << std::endl;
    }
  }
  if (json) {
    // stdout carries JSON only; the port note still reaches a person.
    if (!ports.note().empty()) std::cerr << program << ": " << ports.note() << "\n";
    return every_cell_ran ? 0 : kExitCouldNotRun;
  }

  printer.key();
  const auto busy_ms = std::chrono::duration_cast<std::chrono::milliseconds>(busy).count();
  print_tally(narrator, grid, cells_run, busy_ms, ports.description(),
              colour ? kUnicodeGlyphs.differs : kAsciiGlyphs.differs);
  if (!ports.note().empty()) narrator.paragraph("Port:", ports.note(), Tone::note);
  print_readings(narrator, grid);
  narrator.blank();
  return every_cell_ran ? 0 : kExitCouldNotRun;
}
