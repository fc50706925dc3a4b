#include "portreuse/experiment.hpp"

#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "portreuse/child.hpp"
#include "portreuse/cli.hpp"
#include "portreuse/json.hpp"
#include "portreuse/ports.hpp"

namespace portreuse {
namespace {

bool is_closing_state(TcpState state) {
  return state == TcpState::fin_wait1 || state == TcpState::closing || state == TcpState::last_ack ||
         state == TcpState::syn_sent || state == TcpState::syn_recv;
}

std::string join(const std::vector<std::string>& lines, std::string_view separator) {
  std::string text;
  for (const auto& line : lines) text += (text.empty() ? "" : std::string(separator)) + line;
  return text;
}

// Loopback must accept a connection, or no lesson here can be trusted. The probe closes with RST
// (SO_LINGER 0) so that it leaves no TIME_WAIT behind.
std::optional<std::string> loopback_problem() {
  auto listener = open_socket(AF_INET);
  if (!listener) return "socket: " + describe_outcome(listener.error());
  const auto any_port = *Endpoint::parse("127.0.0.1", 0);
  if (auto error = bind_to(listener->get(), any_port)) return "bind 127.0.0.1:0: " + describe_outcome(error);
  if (auto error = listen_on(listener->get(), 1)) return "listen on 127.0.0.1: " + describe_outcome(error);
  auto bound = local_endpoint(listener->get());
  if (!bound) return "getsockname: " + describe_outcome(bound.error());
  auto client = open_socket(AF_INET);
  if (!client) return "socket: " + describe_outcome(client.error());
  (void)apply_options(client->get(), SocketOptions{.abortive_close = true});
  if (auto error = connect_within(client->get(), *bound, Millis(1000))) {
    return "connect " + bound->text() + ": " + describe_outcome(error);
  }
  auto accepted = accept_within(listener->get(), Millis(1000));
  if (!accepted) return "accept on " + bound->text() + ": " + describe_outcome(accepted.error());
  (void)apply_options(accepted->fd.get(), SocketOptions{.abortive_close = true});
  return std::nullopt;
}

// A port the user chose must be free of sockets this run did not create; otherwise whatever
// holds it would be taught as the lesson's outcome.
std::optional<std::string> user_port_problem(std::uint16_t port) {
  if (auto holders = sockets_holding(port); holders && !holders->empty()) {
    return "port " + std::to_string(port) + " is already in use by sockets this experiment did not create:\n  " +
           join(describe_holders(*holders), "\n  ") +
           "\nThat is someone else's socket (or an earlier run's TIME_WAIT), not this lesson's outcome. "
           "Pick another port, or leave out --port to get a free one.";
  }
  auto probe = open_socket(AF_INET);
  if (!probe) return "socket: " + describe_outcome(probe.error());
  const auto error = bind_to(probe->get(), *Endpoint::parse("0.0.0.0", port));
  if (error.value() == EACCES) {
    return "port " + std::to_string(port) + " needs privileges to bind (EACCES): ports below " +
           "net.ipv4.ip_unprivileged_port_start are reserved. Pick a port of 1024 or more.";
  }
  if (error) return "port " + std::to_string(port) + " cannot be bound: " + describe_outcome(error);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> preflight_problem(std::optional<std::uint16_t> user_port) {
  if (auto problem = loopback_problem()) return "the loopback interface does not work here (" + *problem + ")";
  if (user_port) return user_port_problem(*user_port);
  return std::nullopt;
}

std::string verdict_key(Verdict verdict) {
  switch (verdict) {
    case Verdict::holds: return "holds";
    case Verdict::does_not_hold: return "does-not-hold";
    case Verdict::depends_on_platform: return "depends-on-platform";
  }
  return "?";
}

std::string verdict_words(Verdict verdict) {
  switch (verdict) {
    case Verdict::holds: return "the claim holds here";
    case Verdict::does_not_hold: return "the claim does not hold here";
    case Verdict::depends_on_platform: return "the claim depends on the platform: it does not hold here";
  }
  return "?";
}

Verdict judge(const std::string& observed, const Step& step) {
  if (observed == step.claimed) return Verdict::holds;
  return step.elsewhere.empty() ? Verdict::does_not_hold : Verdict::depends_on_platform;
}

std::string choose_explanation(const Step& step, const std::string& observed, const std::string& situation) {
  const auto fits = [&](const Explanation& candidate, bool need_situation, bool need_outcome) {
    if (need_outcome && candidate.outcome != observed) return false;
    if (!need_outcome && candidate.outcome != "*" && candidate.outcome != observed) return false;
    if (need_situation) return !candidate.situation.empty() && candidate.situation == situation;
    return candidate.situation.empty();
  };
  for (const auto& [need_situation, need_outcome] :
       {std::pair{true, true}, std::pair{false, true}, std::pair{true, false}, std::pair{false, false}}) {
    for (const auto& candidate : step.explanations) {
      if (fits(candidate, need_situation, need_outcome)) return candidate.text;
    }
  }
  return "This lesson has no explanation prepared for " + observed +
         (situation.empty() ? std::string() : " in this situation (" + situation + ")") +
         ": the kernel here behaved differently from the Linux the lesson was written for. What it did is "
         "shown above; compare it with the platform notes in the lesson.";
}

Result<std::uint16_t> StepContext::fresh_port() const {
  return free_tcp_port();
}

Endpoint StepContext::wildcard(std::uint16_t port) const {
  return *Endpoint::parse("0.0.0.0", port);
}

Endpoint StepContext::loopback(std::uint16_t port) const {
  return *Endpoint::parse("127.0.0.1", port);
}

Result<std::vector<SocketEntry>> StepContext::show_sockets(std::uint16_t port, std::string_view caption) const {
  auto table = read_socket_table();
  if (!table) {
    narrator_.line("kernel", "cannot read the socket table (" + describe_outcome(table.error()) +
                                 "): not available here, so nothing about the port's sockets was observed");
    return table.error();
  }
  std::vector<std::string> rows;
  for (const auto& entry : involving_port(*table, port)) rows.push_back(entry.describe());
  narrator_.table("kernel", caption, rows);
  return bound_to_port(*table, port);
}

void StepContext::let_closing_settle(std::uint16_t port) const {
  const auto until = std::chrono::steady_clock::now() + Millis(500);
  while (std::chrono::steady_clock::now() < until) {
    auto table = read_socket_table();
    if (!table) return;
    bool closing = false;
    for (const auto& entry : involving_port(*table, port)) closing = closing || is_closing_state(entry.state);
    if (!closing) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int run_experiment(const Experiment& experiment, int argc, const char* const* argv) {
  const std::string program = experiment.number + "-" + experiment.slug;
  std::string description = experiment.title + "\n\n" + experiment.summary + "\n\nSteps:";
  bool has_long_steps = false;
  for (const auto& step : experiment.steps) {
    description += "\n  " + step.id + (step.long_running ? "  (with --long)" : "");
    has_long_steps = has_long_steps || step.long_running;
  }
  std::vector<OptionSpec> options{
      {"--port", "P", "use port P (default: a free port from the kernel, per step)"},
      {"--json", "", "print one JSON object per step (JSON Lines) and nothing else"},
      {"--no-color", "", "no colours (also when NO_COLOR is set or output is not a terminal)"},
      {"--step", "", "pause before each step and wait for Enter (for a classroom)"},
      {"--record", "FILE", "also append the JSON Lines to FILE (run-all's summary reads it)"}};
  if (has_long_steps) options.push_back({"--long", "", "also run the steps that take longer than a moment"});
  const CommandLine cli(
      program,
      std::string("[--port P] [--json] [--no-color] [--step] [--record FILE]") + (has_long_steps ? " [--long]" : ""),
      description, options);
  const auto parsed_or_exit = cli.parse_or_exit(argc, argv);
  if (const auto* exit_status = std::get_if<int>(&parsed_or_exit)) return *exit_status;
  const auto& args = std::get<ParsedArgs>(parsed_or_exit);
  std::optional<std::uint16_t> user_port;
  if (auto text = args.value("--port")) {
    user_port = parse_port(*text);
    if (!user_port) return cli.usage_error(bad_port_message(*text));
  }
  const bool json = args.has("--json");
  std::ofstream record_file;
  if (auto path = args.value("--record")) {
    record_file.open(*path, std::ios::app);
    if (!record_file) return cli.usage_error("cannot write to '" + *path + "'");
  }
  const auto emit = [&](const JsonObject& record) {
    if (json) std::cout << record.text() << std::endl;
    if (record_file.is_open()) record_file << record.text() << std::endl;
  };
  const Narrator narrator(std::cout, !json, colour_wanted(args.has("--no-color"), 1));
  install_interrupt_cleanup();

  if (auto problem = preflight_problem(user_port)) {
    std::cerr << program << ": cannot run: " << *problem << "\n";
    return kExitCouldNotRun;
  }

  narrator.banner(experiment.number, experiment.title);
  narrator.paragraph("", experiment.summary, Tone::dim);
  bool every_step_ran = true;
  for (const auto& step : experiment.steps) {
    if (step.long_running && !args.has("--long")) continue;
    if (args.has("--step")) narrator.pause(step.preview);
    std::uint16_t port = 0;
    std::string port_note;
    if (user_port) {
      auto holders = sockets_holding(*user_port);
      if (!holders || holders->empty()) {
        port = *user_port;
      } else {
        port_note = "Port " + std::to_string(*user_port) + " is not free any more (" +
                    join(describe_holders(*holders), "; ") +
                    "). This step moves to a fresh port so that what was left there does not decide its outcome.";
      }
    }
    if (port == 0) {
      auto fresh = free_tcp_port();
      if (!fresh) {
        std::cerr << program << ": cannot run step " << step.id << ": no free port (" << describe_outcome(fresh.error())
                  << ")\n";
        return kExitCouldNotRun;
      }
      port = *fresh;
    }
    narrator.step_heading(step.id, step.preview);
    if (!port_note.empty()) narrator.paragraph("Port:", port_note, Tone::note);
    narrator.paragraph("Claim:", step.claim + " [" + step.source + "]");

    StepContext context(narrator, port, json);
    const Observation observation = step.run(context);
    JsonObject record;
    record.add("experiment", experiment.number).add("step", step.id).add("port", static_cast<int>(port));
    if (observation.could_not_run) {
      every_step_ran = false;
      narrator.paragraph("Could not run:", *observation.could_not_run, Tone::bad);
      std::cerr << program << ": step " << step.id << " could not run: " << *observation.could_not_run << "\n";
      record.add("call", observation.call).add("outcome", "could-not-run").add("why", *observation.could_not_run);
      emit(record);
      continue;
    }
    if (observation.skipped) {
      narrator.paragraph("Skipped:", *observation.skipped, Tone::note);
      record.add("call", observation.call)
          .add("outcome", "skipped")
          .add("expected", step.expected_linux)
          .add("claimed", step.claimed)
          .add("verdict", "skipped")
          .add("claim", step.claim)
          .add("source", step.source)
          .add("why", *observation.skipped);
      for (const auto& [key, value] : observation.facts) record.add_raw(key, value);
      emit(record);
      continue;
    }
    const std::string observed = outcome_name(observation.outcome);
    const Verdict verdict = judge(observed, step);
    const std::string explanation = choose_explanation(step, observed, observation.situation);

    narrator.blank();
    narrator.paragraph("Observed:",
                       observation.call + " -> " + observed + "   (Linux is expected to give " + step.expected_linux +
                           "; the article predicts " + step.claimed + ")",
                       observed == "ok" ? Tone::good : Tone::bad);
    if (observed != step.expected_linux) {
      narrator.paragraph("Note:",
                         "this kernel did not give the outcome this lesson expects on Linux. The verdict and the "
                         "explanation follow what it did.",
                         Tone::note);
    }
    narrator.paragraph("Verdict:", verdict_words(verdict) + ".", verdict == Verdict::holds ? Tone::good : Tone::note);
    narrator.paragraph("Why:", explanation);
    if (verdict == Verdict::depends_on_platform) narrator.paragraph("Elsewhere:", step.elsewhere, Tone::dim);

    record.add("call", observation.call)
        .add("outcome", observed)
        .add("expected", step.expected_linux)
        .add("as_expected", observed == step.expected_linux)
        .add("claimed", step.claimed)
        .add("verdict", verdict_key(verdict))
        .add("claim", step.claim)
        .add("source", step.source)
        .add("situation", observation.situation)
        .add("explanation", explanation);
    for (const auto& [key, value] : observation.facts) record.add_raw(key, value);
    emit(record);
  }
  narrator.blank();
  return every_step_ran ? 0 : kExitCouldNotRun;
}

}  // namespace portreuse
