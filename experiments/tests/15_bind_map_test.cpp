// Experiment 15 against the live kernel: all 216 cells of the bind map, each with its exact Linux
// outcome, plus the summary records run-all reads and the --port fallback.
//
// How the expected map below was built (reasoned first, then checked against a live run on 6.18):
//
// * First socket bound only, no option: the kernel's own selftest
//   tools/testing/selftests/net/bind_wildcard.c. Each of its variants binds two addresses on one
//   port; expected_errno[1] is the second bind() against the first, which is one cell here. The
//   variant names per row (columns 2..6 of the row, in column order):
//     0.0.0.0           v4_any_v4_local, v4_any_v6_any, v4_any_v6_any_only, v4_any_v6_local,
//                       v4_any_v6_v4mapped_local
//     127.0.0.1         v4_local_v4_any (column 1), v4_local_v6_any, v4_local_v6_any_only,
//                       v4_local_v6_local, v4_local_v6_v4mapped_local
//     ::                v6_any_v4_any, v6_any_v4_local, v6_any_v6_any_only, v6_any_v6_local,
//                       v6_any_v6_v4mapped_local
//     :: V6ONLY         v6_any_only_v4_any, v6_any_only_v4_local, v6_any_only_v6_any,
//                       v6_any_only_v6_any_only (the diagonal), v6_any_only_v6_local,
//                       v6_any_only_v6_v4mapped_local
//     ::1               v6_local_v4_any, v6_local_v4_local, v6_local_v6_any, v6_local_v6_any_only,
//                       v6_local_v6_v4mapped_local
//     ::ffff:127.0.0.1  v6_v4mapped_local_v4_any, v6_v4mapped_local_v4_local,
//                       v6_v4mapped_loopback_v6_any, v6_v4mapped_loopback_v6_any_only,
//                       v6_v4mapped_loopback_v6_local
//   The other diagonal cells (the same address twice) are the plainest conflict; the selftest's
//   later binds repeat its first address and expect EADDRINUSE there too.
//   The rule behind it (inet_rcv_saddr_equal in net/ipv4/inet_connection_sock.c): 0.0.0.0 covers
//   every IPv4 address; :: covers IPv4 too unless IPV6_V6ONLY; a v4-mapped address is compared as
//   the IPv4 address it maps; binding a specific IPv6 address such as ::1 makes the socket v6-only.
// * First socket bound only, SO_REUSEADDR or SO_REUSEPORT on both: bind_wildcard.c's
//   expected_reuse_errno[1] is 0 in every variant (its reuseaddr and reuseport tests).
// * First socket listening: not in bind_wildcard.c. From inet_csk_bind_conflict(): SO_REUSEADDR on
//   both forgives an overlap only when the earlier socket is not in TCP_LISTEN, so the listening
//   SO_REUSEADDR block equals the no-option block; SO_REUSEPORT on both (same user) forgives it in
//   any state. tools/testing/selftests/net/reuseaddr_conflict.c checks two of these cells
//   (127.0.0.1 listening, then 0.0.0.0 refused and :: V6ONLY accepted, SO_REUSEADDR on both).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>

#include "portreuse/json.hpp"
#include "portreuse/net.hpp"
#include "portreuse/ports.hpp"
#include "test_support.hpp"

namespace portreuse::testing {
namespace {

const std::array<const char*, 6> kAddressKeys{"0.0.0.0", "127.0.0.1", "::", "::v6only", "::1", "::ffff:127.0.0.1"};

struct ExpectedBlock {
  const char* option;       // none, reuseaddr, reuseport (both sockets)
  const char* first_state;  // bound-only, listening
  std::array<const char*, 6> rows;
};

// 'X' = EADDRINUSE, '.' = ok. Rows: the first socket's address; columns: the second socket's, both
// in kAddressKeys order.
const std::array<ExpectedBlock, 6> kLinuxMap{{
    {"none",
     "bound-only",
     {
         "XXX..X",  // 0.0.0.0: all of IPv4, so also the dual-stack :: and the v4-mapped 127.0.0.1
         "XXX..X",  // 127.0.0.1
         "XXXXXX",  // :: (dual stack): everything
         "..XXX.",  // :: V6ONLY: IPv6 only
         "..XXX.",  // ::1
         "XXX..X",  // ::ffff:127.0.0.1: exactly like 127.0.0.1
     }},
    {"none",
     "listening",
     {
         "XXX..X",
         "XXX..X",
         "XXXXXX",
         "..XXX.",
         "..XXX.",
         "XXX..X",
     }},
    {"reuseaddr",
     "bound-only",
     {
         "......",
         "......",
         "......",
         "......",
         "......",
         "......",
     }},
    {"reuseaddr",
     "listening",
     {
         "XXX..X",  // the listener takes SO_REUSEADDR's permission back
         "XXX..X",
         "XXXXXX",
         "..XXX.",
         "..XXX.",
         "XXX..X",
     }},
    {"reuseport",
     "bound-only",
     {
         "......",
         "......",
         "......",
         "......",
         "......",
         "......",
     }},
    {"reuseport",
     "listening",
     {
         "......",  // same user: even a listener's own address can be bound again
         "......",
         "......",
         "......",
         "......",
         "......",
     }},
}};

std::string cell_id(const ExpectedBlock& block, std::size_t first, std::size_t second) {
  return std::string("bind-map/") + block.option + "/" + block.first_state + "/" + kAddressKeys[first] + "/" +
         kAddressKeys[second];
}

bool needs_ipv6(std::size_t first, std::size_t second) {
  return first >= 2 || second >= 2;
}

// A file name for --record that no parallel test shares; removed when the test ends.
class TemporaryFile {
 public:
  TemporaryFile() {
    std::string pattern =
        (std::getenv("TMPDIR") != nullptr ? std::string(std::getenv("TMPDIR")) : "/tmp") + "/portreuse-15-XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    REQUIRE(fd >= 0);
    ::close(fd);
    path_ = pattern;
  }
  ~TemporaryFile() { ::unlink(path_.c_str()); }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Narration wraps at 78 columns; sentences are looked for with the line breaks taken out.
std::string unwrapped(const std::string& text) {
  std::istringstream words(text);
  std::string joined;
  std::string word;
  while (words >> word) joined += (joined.empty() ? "" : " ") + word;
  return joined;
}

// The objects of a JSON array of flat objects (a step's "cells"), each read as a Record.
std::vector<Record> array_of_objects(const std::string& array) {
  std::vector<Record> objects;
  int depth = 0;
  bool in_string = false;
  std::size_t start = 0;
  for (std::size_t index = 0; index < array.size(); ++index) {
    const char character = array[index];
    if (in_string) {
      if (character == '\\') ++index;
      if (character == '"') in_string = false;
      continue;
    }
    if (character == '"') in_string = true;
    if (character == '{' && depth++ == 0) start = index;
    if (character == '}' && --depth == 0) {
      auto object = parse_flat_json(std::string_view(array).substr(start, index + 1 - start));
      REQUIRE_MESSAGE(object.has_value(), "not a JSON object in the cells: " << array.substr(start, 80));
      objects.push_back(*object);
    }
  }
  return objects;
}

// Every cell of every block the program reported, each with its id under "cell".
std::vector<Record> cells_of(const std::vector<Record>& records) {
  std::vector<Record> cells;
  for (const auto& record : records) {
    REQUIRE_MESSAGE(record.count("cells") == 1, "step " << record.at("step") << " has no cells");
    for (auto& cell : array_of_objects(record.at("cells"))) cells.push_back(std::move(cell));
  }
  return cells;
}

const Record* find_cell(const std::vector<Record>& cells, const std::string& id) {
  for (const auto& cell : cells) {
    if (cell.at("cell") == id) return &cell;
  }
  return nullptr;
}

std::vector<Record> read_records(const std::string& path) {
  std::ifstream file(path);
  std::vector<Record> records;
  std::string line;
  while (std::getline(file, line)) {
    auto record = parse_flat_json(line);
    REQUIRE_MESSAGE(record.has_value(), "not a JSON object: " << line);
    records.push_back(*record);
  }
  return records;
}

TEST_CASE("15 bind-map: every cell gives the exact Linux errno") {
  const auto started = std::chrono::steady_clock::now();
  const auto records = run_experiment_json("15");
  const auto elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  WARN_MESSAGE(elapsed.count() < 500, "the map took " << elapsed.count() << " ms (target: well under 0.5 s)");
  // One step per block, each answered by the article's cell (0.0.0.0, then 127.0.0.1).
  check_steps(records, "15");
  CHECK(records.size() == kLinuxMap.size());
  const auto cells = cells_of(records);
  CHECK(cells.size() == 216);
  for (const auto& block : kLinuxMap) {
    const auto step = std::string("bind-map/") + block.option + "/" + block.first_state;
    const Record* record = find_step(records, step);
    REQUIRE_MESSAGE(record != nullptr, "the program did not report step " << step);
    CHECK(record->at("option") == block.option);
    CHECK(record->at("first_state") == block.first_state);
    CHECK(record->at("verdict") == "holds");
    CHECK(record->at("differing") == "[]");
  }
  for (const auto& block : kLinuxMap) {
    for (std::size_t first = 0; first < 6; ++first) {
      for (std::size_t second = 0; second < 6; ++second) {
        const auto id = cell_id(block, first, second);
        CAPTURE(id);
        const std::string expected = block.rows[first][second] == 'X' ? "EADDRINUSE" : "ok";
        const Record* record = find_cell(cells, id);
        REQUIRE_MESSAGE(record != nullptr, "the program did not report cell " << id);
        CHECK(record->at("call") == "bind");
        CHECK(record->at("first") == kAddressKeys[first]);
        CHECK(record->at("second") == kAddressKeys[second]);
        // The program's documented rule must agree with this table, or one of them is wrong.
        CHECK(record->at("expected") == expected);
        if (record->at("outcome") == "skipped") {
          // Only a system without IPv6 skips, and only the cells that need it, saying why.
          CHECK(needs_ipv6(first, second));
          CHECK(!record->at("why").empty());
          continue;
        }
        CHECK(record->at("outcome") == expected);
        CHECK(record->at("as_expected") == "true");
      }
    }
  }
}

TEST_CASE("15 bind-map: --record writes one summary record per block and the screen is ASCII") {
  const TemporaryFile record_file;
  const auto result = run_program({program_path("15"), "--no-color", "--record", record_file.path()});
  INFO("stderr: " << result.err);
  REQUIRE(result.status.exited);
  REQUIRE(result.status.code == 0);
  // Not a terminal and --no-color: plain ASCII, no escape sequences.
  for (const char byte : result.out) {
    CHECK_MESSAGE(static_cast<unsigned char>(byte) < 0x80, "non-ASCII byte in plain output");
    CHECK_MESSAGE(byte != '\033', "escape sequence in plain output");
  }
  CHECK(result.out.find("First socket bound, not listening") != std::string::npos);
  CHECK(result.out.find("First socket listening") != std::string::npos);
  CHECK(unwrapped(result.out).find("Every cell gave the outcome the documented Linux rules predict") !=
        std::string::npos);

  const auto records = read_records(record_file.path());
  REQUIRE(records.size() == kLinuxMap.size());
  for (const auto& block : kLinuxMap) {
    const auto step = std::string("bind-map/") + block.option + "/" + block.first_state;
    CAPTURE(step);
    const Record* record = find_step(records, step);
    REQUIRE(record != nullptr);
    for (const char* key : {"experiment", "call", "claimed", "outcome", "verdict", "as_expected", "claim", "source"}) {
      CHECK_MESSAGE(record->count(key) == 1, "missing " << key);
    }
    CHECK(record->at("verdict") == "holds");
    CHECK(record->at("as_expected") == "true");
    CHECK(record->at("differing") == "[]");
    // The block's counts, documented and observed, against this test's map.
    if (record->at("observed").find("skipped") == std::string::npos) {
      int in_use = 0;
      for (const auto* row : block.rows) in_use += static_cast<int>(std::count(row, row + 6, 'X'));
      const auto counts = std::to_string(36 - in_use) + " ok " + std::to_string(in_use) + " inuse";
      CHECK(record->at("documented") == counts);
      CHECK(record->at("observed") == counts);
    }
  }

  // run-all's summary table reads these records as they are.
  const auto summary = run_program({tool_path("portreuse-summary"), "--no-color", record_file.path()});
  CHECK(summary.status.code == 0);
  CHECK(summary.out.find("bind-map/reuseaddr/listening") != std::string::npos);
  CHECK(summary.out.find("6 claims of the articles. Holds here: 6.") != std::string::npos);
}

TEST_CASE("15 bind-map: --port P is used while it is free") {
  SUBCASE("a free port serves every cell") {
    const auto port = free_tcp_port();
    REQUIRE(port.has_value());
    const auto records = run_experiment_json("15", {"--port", std::to_string(*port)});
    CHECK(records.size() == kLinuxMap.size());
    for (const auto& record : records) CHECK(record.at("port") == std::to_string(*port));
    const auto cells = cells_of(records);
    CHECK(cells.size() == 216);
    for (const auto& record : cells) {
      if (record.at("outcome") == "skipped") continue;
      CAPTURE(record.at("cell"));
      CHECK(record.at("port") == std::to_string(*port));
    }
  }
  SUBCASE("a port someone else holds is reported and no cell is run") {
    auto holder = open_socket(AF_INET);
    REQUIRE(holder.has_value());
    REQUIRE(!bind_to(holder->get(), *Endpoint::parse("127.0.0.1", 0)));
    REQUIRE(!listen_on(holder->get()));
    const auto held = local_endpoint(holder->get());
    REQUIRE(held.has_value());
    const auto port_text = std::to_string(held->port());

    const auto result = run_program({program_path("15"), "--json", "--port", port_text});
    CHECK(result.status.code == 1);
    CHECK(result.out.empty());
    CHECK(result.err.find("port " + port_text + " is already in use") != std::string::npos);
  }
}

// The cells a picture drawn by --svg shows: each cell's data-cell id and its data-outcome.
std::map<std::string, std::string> pictured_cells(const std::string& svg) {
  std::map<std::string, std::string> cells;
  const std::string id_mark = "data-cell=\"";
  const std::string outcome_mark = "data-outcome=\"";
  std::size_t at = 0;
  while ((at = svg.find(id_mark, at)) != std::string::npos) {
    const auto id_start = at + id_mark.size();
    const auto id_end = svg.find('"', id_start);
    const auto outcome_at = svg.find(outcome_mark, id_end);
    REQUIRE(outcome_at != std::string::npos);
    const auto outcome_start = outcome_at + outcome_mark.size();
    const auto outcome_end = svg.find('"', outcome_start);
    cells[svg.substr(id_start, id_end - id_start)] = svg.substr(outcome_start, outcome_end - outcome_start);
    at = outcome_end;
  }
  return cells;
}

std::string file_text(const std::string& path) {
  std::ifstream file(path);
  REQUIRE_MESSAGE(file.good(), "cannot read " << path);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

TEST_CASE("15 bind-map: --svg draws this run's cells and the committed picture shows this kernel's") {
  const TemporaryFile drawn;
  const auto records = run_experiment_json("15", {"--svg", drawn.path()});
  const auto cells = cells_of(records);
  REQUIRE(cells.size() == 216);
  const auto svg = file_text(drawn.path());
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  const auto live = pictured_cells(svg);
  CHECK(live.size() == 216);
  const auto committed = pictured_cells(file_text(std::string(PORTREUSE_SOURCE_DIR) + "/lessons/15-bind-map.svg"));
  CHECK(committed.size() == 216);
  int compared = 0;
  for (const auto& cell : cells) {
    const auto& id = cell.at("cell");
    const auto& outcome = cell.at("outcome");
    CAPTURE(id);
    // The picture of this run holds exactly what the run's JSON holds, skipped cells too.
    CHECK(live.count(id) == 1);
    if (live.count(id) == 1) CHECK(live.at(id) == outcome);
    if (outcome == "skipped" || outcome == "could-not-run") continue;  // nothing to hold it against
    ++compared;
    const auto found = committed.find(id);
    const std::string shown = found == committed.end() ? std::string("(missing)") : found->second;
    CHECK_MESSAGE(shown == outcome, "lessons/15-bind-map.svg is not this kernel's map ("
                                        << outcome
                                        << " here); redraw it with "
                                           "build/default/bin/15-bind-map --svg lessons/15-bind-map.svg");
  }
  if (compared < 216) WARN_MESSAGE(false, "only " << compared << " cells ran here (no IPv6?)");
}

TEST_CASE("15 bind-map: only 15 offers --svg and a path it cannot write is bad input") {
  const auto bad = run_program({program_path("15"), "--svg", "/nonexistent-folder/map.svg"});
  REQUIRE(bad.status.exited);
  CHECK(bad.status.code == 2);
  CHECK(bad.err.find("cannot write to '/nonexistent-folder/map.svg'") != std::string::npos);
  CHECK(bad.out.empty());
  const auto help = run_program({program_path("15"), "--help"});
  CHECK(help.out.find("--svg FILE") != std::string::npos);
  const auto elsewhere = run_program({program_path("02"), "--svg", "/tmp/never-written.svg"});
  REQUIRE(elsewhere.status.exited);
  CHECK(elsewhere.status.code == 2);
  CHECK(::access("/tmp/never-written.svg", F_OK) != 0);
}

}  // namespace
}  // namespace portreuse::testing
