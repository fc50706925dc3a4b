// An experiment is a table of steps. Each step states an article's claim and the outcome Linux
// is expected to give, runs the scenario for real, and then the runner compares: the verdict and
// the explanation are chosen from the outcome observed in this run, never from the table alone.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "portreuse/narrator.hpp"
#include "portreuse/net.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse {

// What a step saw. `situation` names an observed fact that selects among explanations
// (for example "time-wait" when the socket table showed a TIME_WAIT on the port).
struct Observation {
  std::string call;  // the call whose outcome answers the step: bind, listen, connect
  std::error_code outcome;
  std::string situation;
  std::vector<std::pair<std::string, std::string>> facts;  // extra JSON members (key, JSON text)
  std::optional<std::string> could_not_run;                // setup failed: why; the step teaches nothing
  std::optional<std::string> skipped;                      // this system cannot run the step (no IPv6, not root): why

  // The JSON text of a fact this step recorded; nullopt when it recorded none under that key.
  [[nodiscard]] std::optional<std::string> fact(std::string_view key) const {
    for (const auto& [name, value] : facts) {
      if (name == key) return value;
    }
    return std::nullopt;
  }

  static Observation failed_setup(std::string why) {
    Observation observation;
    observation.could_not_run = std::move(why);
    return observation;
  }
  // Not a failure: the step needs something this system does not offer, and says what.
  static Observation skip(std::string call, std::string why) {
    Observation observation;
    observation.call = std::move(call);
    observation.skipped = std::move(why);
    return observation;
  }
};

struct Explanation {
  std::string outcome;    // "ok", an errno name, or "*" for any
  std::string situation;  // "" for any
  std::string text;
};

class StepContext;

struct Step {
  std::string id;
  std::string preview;         // one line: what is about to happen (shown by --step)
  std::string claim;           // the article's claim, in our words
  std::string source;          // which article (title; original source)
  std::string claimed;         // the outcome the claim predicts: "ok" or an errno name
  std::string expected_linux;  // the outcome Linux documents (socket(7), kernel selftests)
  std::string elsewhere;       // where the claim is documented to hold when Linux differs (BSD, HP-UX)
  std::vector<Explanation> explanations;
  std::function<Observation(StepContext&)> run;
  bool long_running = false;  // takes more than a moment: runs only with --long
};

struct Experiment {
  std::string number;  // "02"
  std::string slug;    // "time-wait-restart"
  std::string title;
  std::string summary;  // shown by --help and at the start of the run
  std::vector<Step> steps;
};

enum class Verdict { holds, does_not_hold, depends_on_platform };
std::string verdict_key(Verdict verdict);    // "holds", "does-not-hold", "depends-on-platform"
std::string verdict_words(Verdict verdict);  // "the claim holds here", ...

// The verdict follows from the observed outcome and the claim; `elsewhere` marks claims that are
// documented to hold on another system.
Verdict judge(const std::string& observed, const Step& step);
// The explanation that fits the observed outcome and situation best; a plain admission when the
// kernel did something the lesson has no explanation for.
std::string choose_explanation(const Step& step, const std::string& observed, const std::string& situation);

class StepContext {
 public:
  StepContext(const Narrator& narrator, std::uint16_t port, bool json = false)
      : narrator_(narrator), port_(port), json_(json) {}

  [[nodiscard]] const Narrator& narrator() const noexcept { return narrator_; }
  // The step's port: free when the step starts (checked in the socket table).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // True in --json mode: nothing but JSON may go to stdout (no progress lines either).
  [[nodiscard]] bool json() const noexcept { return json_; }
  // Another free port from the kernel, for steps that need a second one.
  Result<std::uint16_t> fresh_port() const;

  [[nodiscard]] Endpoint wildcard(std::uint16_t port) const;  // 0.0.0.0:port
  [[nodiscard]] Endpoint loopback(std::uint16_t port) const;  // 127.0.0.1:port

  // Narrates the sockets with `port` at either end, as the kernel lists them now, and returns the
  // ones bound to it; an error when the table cannot be read (then nothing was observed).
  Result<std::vector<SocketEntry>> show_sockets(std::uint16_t port, std::string_view caption) const;
  // Waits (briefly) until no socket of the port is half-way through closing, so that what is shown
  // is where the kernel settles rather than a passing state.
  void let_closing_settle(std::uint16_t port) const;

 private:
  const Narrator& narrator_;
  std::uint16_t port_;
  bool json_;
};

// Why no experiment can run here, or nullopt: loopback must carry a connection, and a port the
// user chose must be free of sockets this run did not create (else they would be taught as the
// lesson's outcome). Every program checks this before its first step and exits 1 with the text.
std::optional<std::string> preflight_problem(std::optional<std::uint16_t> user_port);

// Parses the common flags, runs the steps in order, prints narration or JSON Lines.
// Exit status: 0 when every step ran or was skipped with a reason (whatever the verdicts), 1 when
// the experiment could not run, 2 for bad usage. Steps marked long_running run only with --long.
int run_experiment(const Experiment& experiment, int argc, const char* const* argv);

}  // namespace portreuse
