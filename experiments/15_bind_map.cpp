// 15-bind-map: the bind-rule map of this kernel.
//
// Shows: which second bind() this kernel accepts on a port that a first socket already holds, for
// six local addresses (0.0.0.0, 127.0.0.1, the dual-stack ::, :: with IPV6_V6ONLY, ::1 and the
// v4-mapped ::ffff:127.0.0.1), first x second, with no option, SO_REUSEADDR on both or SO_REUSEPORT
// on both, and with the first socket only bound or already listening: 216 real bind() calls in
// six blocks of 36. The kernel selftest tools/testing/selftests/net/bind_wildcard.c covers the
// bound-only half; the listening half is where SO_REUSEADDR stops helping, and where real servers
// live.
//
// Articles: every article meets one cell of this map; "Port reuse So_Reuseaddr" (0.0.0.0, then
// 127.0.0.1 on the same port) most directly: that cell answers each block's step, and the other
// 35 must give the documented Linux rule for the block's claim to hold. The documented rule is
// here only to mark the cells where this kernel differs from it; every outcome shown is the one
// bind() returned in this run. Lesson: lessons/15-bind-map.md
//
// Usage: 15-bind-map [--port P] [--json] [--no-color] [--step] [--record FILE] [--svg FILE]
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;
using portreuse::Endpoint;
using portreuse::Tone;

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
// The cell of "Port reuse So_Reuseaddr": 0.0.0.0 first, then 127.0.0.1. It answers each step.
constexpr std::size_t kArticleFirst = 0;
constexpr std::size_t kArticleSecond = 1;

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
  const char* shown;
  const char* heading;
};
const std::array<StateInfo, 2> kStates{{
    {FirstState::bound_only, "bound-only", "only binds", "First socket bound, not listening (bind only)"},
    {FirstState::listening, "listening", "binds and listens", "First socket listening (bind, then listen)"},
}};

// The documented Linux rule (net/ipv4/inet_connection_sock.c, inet_csk_bind_conflict): a bind
// conflicts with a socket on the same port whose address overlaps, unless both sockets set
// SO_REUSEADDR and the earlier one is not listening, or both set SO_REUSEPORT (same user).
// Used only to mark cells where this kernel differs; never shown as an outcome.
constexpr int documented_outcome(Sharing sharing, FirstState state, const Address& first, const Address& second) {
  if ((first.reach & second.reach) == 0) return kOk;
  switch (sharing) {
    case Sharing::none: return EADDRINUSE;
    case Sharing::reuse_address: return state == FirstState::listening ? EADDRINUSE : kOk;
    case Sharing::reuse_port: return kOk;
  }
  return EADDRINUSE;
}

// What one cell gave: the second bind()'s 0 or errno; or why it could not run.
struct CellResult {
  std::optional<int> outcome;
  std::optional<Event> answer;        // the second bind() as recorded
  std::optional<Event> setup_failed;  // the call that kept the cell from being set up
  bool skipped = false;               // needs IPv6, which is not here
  std::uint16_t port = 0;
  std::optional<int> first_try;  // the outcome on the first port, when the cell was repeated
};

const char* family_name(const Address& address) {
  return address.family == AF_INET6 ? "AF_INET6, SOCK_STREAM" : "AF_INET, SOCK_STREAM";
}

// One block: its option and the first socket's state, and the documented rule for its cells.
class Block {
 public:
  Block(std::size_t sharing, std::size_t state)
      : sharing_(kSharings[sharing].sharing),
        state_(kStates[state].state),
        sharing_index_(sharing),
        state_index_(state) {}

  [[nodiscard]] int documented(std::size_t first, std::size_t second) const {
    return documented_outcome(sharing_, state_, kAddressList[first], kAddressList[second]);
  }
  // "First socket listening (bind, then listen); SO_REUSEADDR on both"
  [[nodiscard]] Sharing sharing() const { return sharing_; }
  [[nodiscard]] bool listening() const { return state_ == FirstState::listening; }
  [[nodiscard]] std::string heading() const {
    return std::string(kStates[state_index_].heading) + "; " + kSharings[sharing_index_].shown +
           (sharing_ == Sharing::none ? "" : " on both");
  }

 private:
  Sharing sharing_;
  FirstState state_;
  std::size_t sharing_index_;
  std::size_t state_index_;
};

bool needs_ipv6(std::size_t first, std::size_t second) {
  return kAddressList[first].family == AF_INET6 || kAddressList[second].family == AF_INET6;
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

using Grid = std::array<std::array<CellResult, kAddresses>, kAddresses>;

// The block as a 6 x 6 grid, then a key that lists only what appears in it.
void print_grid(const Lab& lab, const Block& block, const Grid& grid) {
  const auto& narrator = lab.narrator();
  if (!narrator.enabled()) return;
  const bool fancy = narrator.paint("x", Tone::good) != "x";  // colour on: a terminal that shows UTF-8
  const Glyphs& glyphs = fancy ? kUnicodeGlyphs : kAsciiGlyphs;
  constexpr std::size_t kLabelWidth = 22;
  const auto pad = [](std::string text, std::size_t width) {
    if (text.size() < width) text.resize(width, ' ');
    return text;
  };
  std::map<int, std::string> letters;  // other errnos -> a, b, c
  bool skipped = false;
  bool not_run = false;
  bool differs = false;
  std::cout << "\n  " << narrator.paint(block.heading(), Tone::heading) << "\n";
  std::cout << narrator.paint(pad("  first \\ second", kLabelWidth) + "1  2  3  4  5  6", Tone::dim) << "\n";
  for (std::size_t first = 0; first < kAddresses; ++first) {
    std::string line = pad("  " + std::to_string(first + 1) + " " + kAddressList[first].shown, kLabelWidth);
    for (std::size_t second = 0; second < kAddresses; ++second) {
      const auto& cell = grid[first][second];
      if (cell.skipped) {
        skipped = true;
        line += narrator.paint(glyphs.skipped, Tone::dim) + "  ";
        continue;
      }
      if (!cell.outcome) {
        not_run = true;
        line += narrator.paint(glyphs.could_not_run, Tone::bad) + "  ";
        continue;
      }
      const int outcome = *cell.outcome;
      std::string glyph;
      if (outcome == kOk) {
        glyph = narrator.paint(glyphs.ok, Tone::good);
      } else if (outcome == EADDRINUSE) {
        glyph = narrator.paint(glyphs.in_use, Tone::bad);
      } else {
        auto [found, added] = letters.try_emplace(outcome, std::string(1, static_cast<char>('a' + letters.size())));
        glyph = narrator.paint(found->second, Tone::note);
      }
      const bool odd = outcome != block.documented(first, second);
      differs = differs || odd;
      line += glyph + (odd ? narrator.paint(glyphs.differs, Tone::note) : " ") + " ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
  std::string legend = "  ";
  for (std::size_t index = 0; index < kAddresses; ++index) {
    legend += std::string(index == 0 ? "" : "  ") + std::to_string(index + 1) + " " + kAddressList[index].shown;
  }
  std::cout << narrator.paint(legend, Tone::dim) << "\n";
  std::string key = "  " + narrator.paint(glyphs.ok, Tone::good) + " bind ok   " +
                    narrator.paint(glyphs.in_use, Tone::bad) + " EADDRINUSE";
  for (const auto& [error, letter] : letters) {
    key += "   " + narrator.paint(letter, Tone::note) + " " + portreuse::outcome_name(portreuse::make_error(error));
  }
  if (skipped) key += "   " + std::string(glyphs.skipped) + " skipped";
  if (not_run) key += "   " + narrator.paint(glyphs.could_not_run, Tone::bad) + " could not run";
  if (differs) key += "   " + narrator.paint(glyphs.differs, Tone::note) + " differs from documented Linux";
  std::cout << key << "\n\n";
}

// --- the picture: --svg FILE -------------------------------------------------------------------

// The grids of the blocks that ran, kept for --svg. Filled by each step, written after the last.
struct MapPicture {
  std::optional<std::string> path;                          // --svg FILE
  std::array<std::array<std::optional<Grid>, 2>, 3> grids;  // [option][first socket's state]
};

// What a cell gave, in the words of --json's "outcome".
std::string cell_outcome(const CellResult& cell) {
  if (cell.skipped) return "skipped";
  if (!cell.outcome) return "could-not-run";
  return portreuse::outcome_name(portreuse::make_error(*cell.outcome));
}

std::string cell_id(std::size_t sharing, std::size_t state, std::size_t first, std::size_t second) {
  return std::string("bind-map/") + kSharings[sharing].key + "/" + kStates[state].key + "/" + kAddressList[first].key +
         "/" + kAddressList[second].key;
}

// Text and attribute values in the SVG: the five characters XML reserves.
std::string xml_escaped(std::string_view text) {
  std::string escaped;
  for (const char character : text) {
    switch (character) {
      case '&': escaped += "&amp;"; break;
      case '<': escaped += "&lt;"; break;
      case '>': escaped += "&gt;"; break;
      case '"': escaped += "&quot;"; break;
      case '\'': escaped += "&apos;"; break;
      default: escaped += character;
    }
  }
  return escaped;
}

// A small SVG of rectangles and text: the six blocks side by side as on the screen (options
// across, the first socket's state down), each cell coloured by its outcome and annotated with
// its id and outcome (data-cell, data-outcome, a <title>), then a legend. Nothing in it is
// decided here: every cell is what bind() returned in this run.
std::string map_svg(const MapPicture& picture) {
  constexpr int kCell = 26;
  constexpr int kLabels = 150;  // the first socket's addresses, left of the blocks
  constexpr int kBlock = 6 * kCell;
  constexpr int kBlockGap = 22;
  constexpr int kMargin = 14;
  constexpr int kGrid = 54;  // heading, option, column numbers: then the cells
  constexpr int kHalf = kGrid + kBlock + 18;
  constexpr int kWidth = kMargin * 2 + kLabels + 3 * kBlock + 2 * kBlockGap;
  constexpr int kTop = 54;
  constexpr int kLegendTop = kTop + 2 * kHalf;
  constexpr int kHeight = kLegendTop + 70;
  struct Paint {
    const char* fill;
    const char* ink;
    const char* mark;
  };
  const auto paint_for = [](const CellResult& cell) -> Paint {
    if (cell.skipped) return {"#d9d9d9", "#555555", "-"};
    if (!cell.outcome) return {"#555555", "#ffffff", "?"};
    if (*cell.outcome == kOk) return {"#4e9a4e", "#ffffff", "\u2713"};
    if (*cell.outcome == EADDRINUSE) return {"#c8453c", "#ffffff", "\u2717"};
    return {"#e69a28", "#000000", "e"};  // another errno: its name is in the cell's title
  };
  const auto text = [](int x, int y, std::string_view words, std::string_view style) {
    return "<text x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y) + "\"" + std::string(style) + ">" +
           xml_escaped(words) + "</text>\n";
  };
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) + "\" height=\"" +
                    std::to_string(kHeight) + "\" viewBox=\"0 0 " + std::to_string(kWidth) + " " +
                    std::to_string(kHeight) + "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"" +
                    " font-size=\"12\">\n";
  svg += "<title>The bind-rule map of " + xml_escaped(kernel_name()) + "</title>\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg += text(kMargin, 24, "The bind-rule map of " + kernel_name(), " font-size=\"16\" font-weight=\"bold\"");
  svg += text(kMargin, 42, "Rows: the first socket's address. Columns: the second socket's bind() on the same port.",
              " fill=\"#444444\"");
  std::set<int> other_errors;
  bool skipped = false;
  bool not_run = false;
  bool differs = false;
  int calls = 0;
  for (std::size_t state = 0; state < kStates.size(); ++state) {
    const int half_top = kTop + static_cast<int>(state) * kHalf;
    svg += text(kMargin, half_top + 14, kStates[state].heading, " font-weight=\"bold\"");
    for (std::size_t first = 0; first < kAddresses; ++first) {
      svg += text(kMargin, half_top + kGrid + static_cast<int>(first) * kCell + 17,
                  std::to_string(first + 1) + "  " + kAddressList[first].shown, "");
    }
    for (std::size_t sharing = 0; sharing < kSharings.size(); ++sharing) {
      const int left = kMargin + kLabels + static_cast<int>(sharing) * (kBlock + kBlockGap);
      const Block block(sharing, state);
      svg += text(left, half_top + 32, std::string(kSharings[sharing].shown) + (sharing == 0 ? "" : " on both"),
                  " fill=\"#444444\"");
      for (std::size_t second = 0; second < kAddresses; ++second) {
        svg += text(left + static_cast<int>(second) * kCell + kCell / 2, half_top + 48, std::to_string(second + 1),
                    " text-anchor=\"middle\" fill=\"#444444\"");
      }
      const auto& grid = picture.grids[sharing][state];
      if (!grid) {
        svg += text(left, half_top + kGrid + kBlock / 2, "(not run)", " fill=\"#444444\"");
        continue;
      }
      for (std::size_t first = 0; first < kAddresses; ++first) {
        for (std::size_t second = 0; second < kAddresses; ++second) {
          const auto& cell = (*grid)[first][second];
          const Paint paint = paint_for(cell);
          const bool odd = cell.outcome && *cell.outcome != block.documented(first, second);
          skipped = skipped || cell.skipped;
          not_run = not_run || (!cell.skipped && !cell.outcome);
          differs = differs || odd;
          if (cell.outcome) {
            ++calls;
            if (*cell.outcome != kOk && *cell.outcome != EADDRINUSE) other_errors.insert(*cell.outcome);
          }
          const int x = left + static_cast<int>(second) * kCell;
          const int y = half_top + kGrid + static_cast<int>(first) * kCell;
          const std::string id = cell_id(sharing, state, first, second);
          const std::string outcome = cell_outcome(cell);
          svg += "<g data-cell=\"" + xml_escaped(id) + "\" data-outcome=\"" + xml_escaped(outcome) + "\">";
          svg += "<title>" +
                 xml_escaped(std::string(kAddressList[first].shown) + " first, then " + kAddressList[second].shown +
                             " (" + kSharings[sharing].shown + ", first socket " + kStates[state].key +
                             "): " + outcome + (odd ? ", differs from documented Linux" : "")) +
                 "</title>";
          svg += "<rect x=\"" + std::to_string(x + 1) + "\" y=\"" + std::to_string(y + 1) + "\" width=\"" +
                 std::to_string(kCell - 2) + "\" height=\"" + std::to_string(kCell - 2) + "\" fill=\"" + paint.fill +
                 "\"" + (odd ? " stroke=\"#000000\" stroke-width=\"3\"" : "") + "/>";
          svg += "<text x=\"" + std::to_string(x + kCell / 2) + "\" y=\"" + std::to_string(y + 18) +
                 "\" text-anchor=\"middle\" font-size=\"14\" fill=\"" + paint.ink + "\">" +
                 xml_escaped(std::string(paint.mark) + (odd ? "!" : "")) + "</text></g>\n";
        }
      }
    }
  }
  // The legend: what each colour means, only for what the map holds beyond ok and EADDRINUSE.
  struct Key {
    Paint paint;
    std::string words;
  };
  std::vector<Key> keys{{{"#4e9a4e", "#ffffff", "\u2713"}, "bind() ok"},
                        {{"#c8453c", "#ffffff", "\u2717"}, "EADDRINUSE"}};
  for (const int error : other_errors) {
    keys.push_back({{"#e69a28", "#000000", "e"}, portreuse::outcome_name(portreuse::make_error(error))});
  }
  if (skipped) keys.push_back({{"#d9d9d9", "#555555", "-"}, "skipped (no IPv6)"});
  if (not_run) keys.push_back({{"#555555", "#ffffff", "?"}, "could not run"});
  if (differs) keys.push_back({{"#ffffff", "#000000", "!"}, "differs from documented Linux"});
  int x = kMargin;
  for (const auto& key : keys) {
    svg += "<rect x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(kLegendTop) + "\" width=\"" +
           std::to_string(kCell - 2) + "\" height=\"" + std::to_string(kCell - 2) + "\" fill=\"" + key.paint.fill +
           "\" stroke=\"#000000\" stroke-width=\"" + (key.words.rfind("differs", 0) == 0 ? "3" : "0") + "\"/>";
    svg += "<text x=\"" + std::to_string(x + kCell / 2 - 1) + "\" y=\"" + std::to_string(kLegendTop + 17) +
           "\" text-anchor=\"middle\" font-size=\"14\" fill=\"" + key.paint.ink + "\">" + key.paint.mark + "</text>\n";
    svg += text(x + kCell + 4, kLegendTop + 16, key.words, "");
    x += kCell + 14 + static_cast<int>(key.words.size()) * 7;
  }
  std::string numbers;
  for (std::size_t index = 0; index < kAddresses; ++index) {
    numbers +=
        std::string(index == 0 ? "" : "  \u00b7  ") + std::to_string(index + 1) + " " + kAddressList[index].shown;
  }
  svg += text(kMargin, kLegendTop + 42, numbers, " fill=\"#444444\"");
  svg += text(kMargin, kLegendTop + 60,
              std::to_string(calls) + " real bind() calls, drawn by: build/default/bin/15-bind-map --svg FILE",
              " fill=\"#444444\"");
  svg += "</svg>\n";
  return svg;
}

// --svg FILE: checked before the first step (a file that cannot be written is bad input), written
// after the last.
ExtraOption svg_option(MapPicture& picture) {
  return ExtraOption{
      .name = "--svg",
      .value_name = "FILE",
      .help = "also draw the map as an SVG picture in FILE",
      .start = [&picture](const std::string& path) -> std::optional<std::string> {
        std::ofstream probe(path, std::ios::app);
        if (!probe) return "cannot write to '" + path + "'";
        picture.path = path;
        return std::nullopt;
      },
      .finish = [&picture](const portreuse::Narrator& narrator) -> std::optional<std::string> {
        std::ofstream file(*picture.path, std::ios::trunc);
        file << map_svg(picture);
        file.close();
        if (!file) return "writing the picture to '" + *picture.path + "' failed";
        narrator.paragraph("Picture:", "the map is drawn in " + *picture.path + " (SVG).");
        return std::nullopt;
      },
  };
}

// --- one step: one block of 36 cells ------------------------------------------------------------

Observation map_block(Lab& lab, MapPicture& picture, std::size_t sharing, std::size_t state) {
  const Block block(sharing, state);
  const auto ipv6_missing = portreuse::ipv6_unavailable();
  // Failed setup calls are worth reading; the 36 answers are shown as the grid instead.
  auto setup = lab.actor("sockets");
  setup.quiet();
  auto answer = lab.actor("second socket");
  answer.silent();
  std::string port_note;
  std::uint16_t port = lab.port();  // free when the step started; no cell leaves anything on it

  // The block's option on a socket, before its bind().
  const int on = 1;
  const auto set_options = [&](int fd, const Address& address) {
    if (block.sharing() == Sharing::reuse_address) {
      setup.call("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    }
    if (block.sharing() == Sharing::reuse_port) {
      setup.call("setsockopt", ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on), "SO_REUSEPORT=1");
    }
    // Set either way, so that the sysctl net.ipv6.bindv6only does not redraw the map.
    const int v6only = address.v6only ? 1 : 0;
    if (address.family == AF_INET6) {
      setup.call("setsockopt", ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only),
                 v6only == 1 ? "IPV6_V6ONLY=1" : "IPV6_V6ONLY=0");
    }
  };

  Grid grid;
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t first = 0; first < kAddresses; ++first) {
    for (std::size_t second = 0; second < kAddresses; ++second) {
      auto& cell = grid[first][second];
      if (needs_ipv6(first, second) && ipv6_missing) {
        cell.skipped = true;
        continue;
      }
      const auto& one = kAddressList[first];
      const auto& two = kAddressList[second];

      // The cell for real, on a port. Both sockets are closed at the end; neither ever had a
      // connection, so nothing stays behind on the port.
      const auto bind_twice = [&](std::uint16_t on_port) {
        CellResult result;
        result.port = on_port;
        const auto failed = [&] { result.setup_failed = lab.events().back(); };  // the call just made

        // The first socket takes the port (and listens, in the listening half).
        const auto first_at = *Endpoint::parse(one.text, on_port);
        const int held = setup.call("socket", ::socket(one.family, SOCK_STREAM, 0), family_name(one));
        if (held < 0) {
          failed();
          return result;
        }
        set_options(held, one);
        if (setup.call("bind", ::bind(held, first_at.raw(), first_at.raw_length()), first_at) != 0 ||
            (block.listening() && setup.call("listen", ::listen(held, 8)) != 0)) {
          failed();
          setup.call("close", ::close(held));
          return result;
        }

        // The second socket binds the same port: its bind() is the cell's outcome.
        const auto second_at = *Endpoint::parse(two.text, on_port);
        const int other = setup.call("socket", ::socket(two.family, SOCK_STREAM, 0), family_name(two));
        if (other < 0) {
          failed();
          setup.call("close", ::close(held));
          return result;
        }
        set_options(other, two);
        answer.call("bind", ::bind(other, second_at.raw(), second_at.raw_length()), second_at);
        result.answer = lab.events().back();
        result.outcome = result.answer->error;
        setup.call("close", ::close(other));
        setup.call("close", ::close(held));
        return result;
      };

      cell = bind_twice(port);
      // Someone else's socket took the port meanwhile: move to a fresh one (up to three times).
      for (int tries = 0; tries < 3 && cell.setup_failed && cell.setup_failed->call == Call::bind &&
                          (cell.setup_failed->error == EADDRINUSE || cell.setup_failed->error == EACCES);
           ++tries) {
        auto fresh = lab.fresh_port();
        if (!fresh) break;
        port_note = "port " + std::to_string(port) + " was taken during the step; later cells use fresh ports";
        port = *fresh;
        cell = bind_twice(port);
      }
      // A cell that differs from the documented rule is repeated once on a fresh port, so that a
      // socket of some other program cannot pass for the kernel's rule; both outcomes are kept.
      if (cell.outcome && *cell.outcome != block.documented(first, second)) {
        if (auto fresh = lab.fresh_port()) {
          auto repeated = bind_twice(*fresh);
          if (repeated.outcome) {
            repeated.first_try = cell.outcome;
            cell = repeated;
          }
        }
      }
    }
  }
  const auto busy = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);

  // The facts: every cell, the counts, the cells that differ.
  std::vector<std::string> cells;
  std::vector<std::string> differing;
  std::map<std::string, int> observed_counts;
  std::map<std::string, int> documented_counts;
  int ran = 0;
  bool every_cell_ran = true;
  const Event* first_failure = nullptr;
  for (std::size_t first = 0; first < kAddresses; ++first) {
    for (std::size_t second = 0; second < kAddresses; ++second) {
      const auto& cell = grid[first][second];
      const std::string id = std::string("bind-map/") + kSharings[sharing].key + "/" + kStates[state].key + "/" +
                             kAddressList[first].key + "/" + kAddressList[second].key;
      const int documented = block.documented(first, second);
      portreuse::JsonObject record;
      record.add("cell", id)
          .add("first", kAddressList[first].key)
          .add("second", kAddressList[second].key)
          .add("call", "bind")
          .add("expected", portreuse::outcome_name(portreuse::make_error(documented)));
      if (cell.skipped) {
        record.add("outcome", "skipped").add("why", *ipv6_missing);
        ++observed_counts["skipped"];
      } else if (!cell.outcome) {
        every_cell_ran = false;
        if (first_failure == nullptr && cell.setup_failed) first_failure = &*cell.setup_failed;
        const auto& failed = *cell.setup_failed;
        record.add("outcome", "could-not-run")
            .add("why", std::string(call_name(failed.call)) + " " + failed.detail + " returned " +
                            portreuse::describe_outcome(portreuse::make_error(failed.error)));
        ++observed_counts["not-run"];
      } else {
        ++ran;
        const std::string outcome = portreuse::outcome_name(portreuse::make_error(*cell.outcome));
        record.add("outcome", outcome).add("as_expected", *cell.outcome == documented);
        ++observed_counts[*cell.outcome == kOk ? "ok" : *cell.outcome == EADDRINUSE ? "inuse" : "other"];
        ++documented_counts[documented == kOk ? "ok" : "inuse"];
        if (*cell.outcome != documented) differing.push_back(id);
        if (cell.first_try) record.add("first_try", portreuse::outcome_name(portreuse::make_error(*cell.first_try)));
      }
      record.add("port", static_cast<int>(cell.port));
      cells.push_back(record.text());
    }
  }
  const auto counts_text = [](std::map<std::string, int>& counts) {
    std::string text = std::to_string(counts["ok"]) + " ok " + std::to_string(counts["inuse"]) + " inuse";
    for (const char* other : {"other", "skipped", "not-run"}) {
      if (counts[other] > 0) text += " " + std::to_string(counts[other]) + " " + other;
    }
    return text;
  };

  print_grid(lab, block, grid);
  picture.grids[sharing][state] = grid;
  std::string tally = std::to_string(ran) + " real bind() calls on " + kernel_name() + " in " +
                      std::to_string(busy.count()) + " ms, on port " + std::to_string(lab.port()) + ". ";
  tally += differing.empty() ? std::string("Every cell gave the outcome the documented Linux rules predict.")
                             : std::to_string(differing.size()) +
                                   " cell(s) differ from the documented Linux rules (marked !; --json has "
                                   "both tries).";
  lab.narrator().paragraph("", tally, differing.empty() ? Tone::plain : Tone::note);
  if (!port_note.empty()) lab.narrator().paragraph("Port:", port_note, Tone::note);
  if (ipv6_missing) lab.narrator().paragraph("IPv6:", *ipv6_missing + ": the cells that need it are skipped.");

  // The step's answer: the article's cell, 0.0.0.0 then 127.0.0.1; its first socket must have
  // held the port (and listened) first. Every other cell must have run too.
  const auto& article = grid[kArticleFirst][kArticleSecond];
  Observation observation;
  if (!every_cell_ran && first_failure != nullptr) {
    observation = lab.could_not_run("a cell's sockets could not be set up", *first_failure);
  } else {
    observation = lab.observe(article.answer, {},
                              !differing.empty() ? Situation::cells_differ
                              : ipv6_missing     ? Situation::cells_skipped
                                                 : Situation::cells_as_documented);
    observation.detail_holds = differing.empty();
  }
  observation.fact_text("option", kSharings[sharing].key);
  observation.fact_text("first_state", kStates[state].key);
  observation.fact_text("documented", counts_text(documented_counts));
  observation.fact_text("observed", counts_text(observed_counts));
  observation.fact("differing", portreuse::json_string_array(differing));
  observation.fact("cells", portreuse::json_array(cells));
  return observation;
}

// ---- The claims: one per block, and what the map shows -----------------------------------------

Step block_step(MapPicture& picture, std::size_t sharing, std::size_t state, std::string what_it_shows) {
  const auto& option = kSharings[sharing];
  const auto& first_state = kStates[state];
  const Block block(sharing, state);
  return Step{
      .id = std::string("bind-map/") + option.key + "/" + first_state.key,
      .preview = std::string(option.shown) + (sharing == 0 ? "" : " on both") + ": the first socket " +
                 first_state.shown + "; the second binds the same port. 36 cells.",
      .claim = std::string("The documented Linux bind rules give this block (") + option.shown + ", first socket " +
               first_state.key + "), among them the article's cell: 0.0.0.0 first, then 127.0.0.1 on the same port.",
      .source =
          "\"Port reuse So_Reuseaddr\"; kernel selftest tools/testing/selftests/net/"
          "bind_wildcard.c; inet_csk_bind_conflict()",
      .claimed = block.documented(kArticleFirst, kArticleSecond),
      .explanations =
          {
              {std::nullopt, Situation::cells_as_documented, std::move(what_it_shows)},
              {std::nullopt, Situation::cells_skipped,
               "The cells that ran gave the documented outcome; the cells marked as skipped need IPv6, which "
               "this system does not offer."},
              {std::nullopt, Situation::cells_differ,
               "This kernel differs from the documented rule in the cells marked '!' (listed as 'differing' "
               "in --json, each tried twice on two ports): its bind rules are not the ones this map was "
               "drawn from."},
          },
      .run = [&picture, sharing, state](Lab& lab) { return map_block(lab, picture, sharing, state); },
  };
}

// The experiment's steps, one per block; each also leaves its grid in `picture` for --svg.
Experiment bind_map(MapPicture& picture) {
  return Experiment{
      .summary =
          "A first socket takes a port; a second socket binds the same port. Both come from the same six "
          "addresses (0.0.0.0, 127.0.0.1, ::, :: with IPV6_V6ONLY, ::1, ::ffff:127.0.0.1), with no option, "
          "SO_REUSEADDR on both or SO_REUSEPORT on both, and the first socket only bound or listening: 216 "
          "real bind() calls in six blocks. Cells that differ from the documented Linux rule are marked. "
          "Cells in --json: the array 'cells' of each step, ids like "
          "bind-map/reuseaddr/listening/0.0.0.0/127.0.0.1 (:: with IPV6_V6ONLY is ::v6only).",
      .steps =
          {
              block_step(picture, 0, 0,
                         "Wildcard and specific overlap: 0.0.0.0 holds the port on every IPv4 address, so 127.0.0.1 "
                         "is refused in either order (1->2, 2->1). The dual-stack :: also takes IPv4 (3->1 "
                         "refused); with IPV6_V6ONLY it takes IPv6 only and 0.0.0.0 fits beside it (4->1). "
                         "::ffff:127.0.0.1 is 127.0.0.1 reached through an IPv6 socket: it conflicts with "
                         "127.0.0.1 (2->6), never with ::1 (6->5)."),
              block_step(picture, 0, 1,
                         "Listening adds no conflict of its own: without options the same cells are refused as "
                         "when the first socket was only bound."),
              block_step(picture, 1, 0,
                         "SO_REUSEADDR on both sockets lets overlapping binds share the port while the first socket "
                         "is not listening: every cell is accepted, the article's 1->2 too."),
              block_step(picture, 1, 1,
                         "Once the first socket listens, SO_REUSEADDR stops forgiving an overlap: this block equals "
                         "the no-option block. So 0.0.0.0 listening, then 127.0.0.1, both with SO_REUSEADDR (\"Port "
                         "reuse So_Reuseaddr\"), is refused here (1->2)."),
              block_step(picture, 2, 0,
                         "SO_REUSEPORT on both sockets (same user) lets every overlapping bind share the port."),
              block_step(picture, 2, 1,
                         "SO_REUSEPORT on both sockets (same user) lets the second bind even a listener's own "
                         "address (1->1): the kernel then spreads connections over both listeners (experiment "
                         "09)."),
          },
      .options = {svg_option(picture)},
  };
}

}  // namespace

int main(int argc, char** argv) {
  MapPicture picture;
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, bind_map(picture), argc, argv);
}
