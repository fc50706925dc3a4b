// The one header an experiment includes. An experiment writes its scenario's socket calls itself,
// in order, with their arguments; this header only records them:
//
//   int fd = t.call("socket", ::socket(AF_INET, SOCK_STREAM, 0));
//   t.call("bind", ::bind(fd, addr.raw(), addr.raw_length()), addr);
//
// `t` is a Trace: it reads errno the moment the call returns, prints "[server 4242] bind
// 0.0.0.0:40123 -> EADDRINUSE" (or writes it to JSON), and keeps the event as evidence. A server
// runs as a real child process (`lab.spawn`), and its events reach the parent over one pipe, so
// the narration shows every process's calls in the order they happened. The step ends with
// `lab.observe(...)`: a verdict only when the evidence the scenario needs was seen in this run;
// otherwise "could not run", naming the call that failed and the errno it returned.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "portreuse/child.hpp"
#include "portreuse/json.hpp"  // facts: JsonObject, json_array
#include "portreuse/narrator.hpp"
#include "portreuse/net.hpp"
#include "portreuse/socket_table.hpp"

namespace portreuse::wire {
class Wire;
struct StepWire;
}  // namespace portreuse::wire

namespace portreuse::lab {

// The calls a trace records. Written in experiments as string literals ("bind"); the conversion
// is checked at compile time, so a misspelt call name does not build.
enum class Call {
  socket,
  setsockopt,
  getsockopt,
  bind,
  listen,
  connect,
  accept,
  recv,
  send,
  shutdown,
  close,
  fork,
  kill,
  sendto,
  recvfrom,
  getsockname,
  unshare,
  sysctl,
  pipe,
  exited,
  note,
  setgroups,
  setgid,
  setuid,  // a child that drops root's rights (09: another user's socket)
  // write: to a file of /proc (a namespace's uid_map); ioctl: an interface's flags (lo up);
  // socket_table: one row of the kernel's socket table as a process saw it (value: its TcpState).
  write,
  ioctl,
  socket_table,
  // timer: the time left on a TIME_WAIT's timer as a process read it from the socket table
  // (value: milliseconds), so that a parent can compare two readings as numbers (16).
  timer,
  // 17: handing a listening socket to the next server (SCM_RIGHTS, LISTEN_FDS across execve),
  // and a process reaping its own children inside a namespace.
  socketpair,
  sendmsg,
  recvmsg,
  execve,
  dup2,
  waitpid,
  signalfd,  // 17: the descriptor a server reads its stop signals from
  fcntl      // 17: the report channel copied above fd 10, to survive execve
};
std::string_view call_name(Call call);

struct CallName {
  Call call;
  consteval CallName(const char* text) : call(parse(text)) {}  // NOLINT(google-explicit-constructor)
  CallName(Call known) : call(known) {}                        // NOLINT(google-explicit-constructor)

 private:
  static consteval bool same(const char* left, const char* right) {
    while (*left != '\0' && *left == *right) ++left, ++right;
    return *left == *right;
  }
  static consteval Call parse(const char* text) {
    constexpr const char* kNames[] = {"socket",  "setsockopt", "getsockopt",   "bind",        "listen",     "connect",
                                      "accept",  "recv",       "send",         "shutdown",    "close",      "fork",
                                      "kill",    "sendto",     "recvfrom",     "getsockname", "unshare",    "sysctl",
                                      "pipe",    "exited",     "note",         "setgroups",   "setgid",     "setuid",
                                      "write",   "ioctl",      "socket_table", "timer",       "socketpair", "sendmsg",
                                      "recvmsg", "execve",     "dup2",         "waitpid",     "signalfd",   "fcntl"};
    for (int index = 0; index < static_cast<int>(std::size(kNames)); ++index) {
      if (same(text, kNames[index])) return static_cast<Call>(index);
    }
    throw "unknown call name";  // a compile error: consteval cannot throw
  }
};

// What a system call returned, and errno when it failed, read before anything else can change it.
// Built implicitly from the call's return value: `t.call("bind", ::bind(...))`. (C++17 and later
// initialise one argument completely before the next, so errno cannot be overwritten between.)
// `at` is when it returned (CLOCK_MONOTONIC, ns), read after errno: the narration's order.
struct Returned {
  long value;
  int error;
  std::int64_t at;
  Returned(long returned) noexcept : value(returned), error(returned < 0 ? errno : 0), at(now_ns()) {}  // NOLINT
  static std::int64_t now_ns() noexcept;
};

// Who made a call. Evidence such as "the server closed first" is read from the role, not from
// the actor's display name.
enum class Role { server, client, other };

// One recorded call (or note), as the narration and the JSON show it.
struct Event {
  pid_t pid = 0;
  int origin = 0;  // which spawned process (and its children) reported it; 0: this process
  Role role = Role::other;
  std::string actor;  // "server 4242", "client", "socket A"
  Call call = Call::note;
  long value = 0;          // what the call returned (a descriptor, a byte count, a pid)
  int error = 0;           // 0 or errno
  std::string detail;      // its arguments in words: "0.0.0.0:40123", or the note's text
  int family = AF_UNSPEC;  // the address family of the endpoint the call named (or the row showed)

  [[nodiscard]] bool ok() const noexcept { return error == 0 && value >= 0; }
  bool quiet = false;   // from a quiet trace: evidence, not narration
  std::int64_t at = 0;  // its place in time (Returned::now_ns; see Trace::call): the narration's order
  [[nodiscard]] std::string text() const;  // "bind 0.0.0.0:40123 -> EADDRINUSE"
};

class Lab;

// Thrown by the `must` forms when a call the scenario depends on failed (or a process never got
// that far). In a child process it ends the child; in the experiment it ends the step, which is
// then reported as "could not run", naming the call that failed and its errno.
struct ScenarioBroke {
  std::string what;
};

// Records the calls of one actor. A Trace in a child process sends its events to the parent.
class Trace {
 public:
  // Records the call and returns what it returned. Descriptors that socket() and accept() return
  // belong to the step: each gets a receive and send timeout (kDefaultDeadline) so no call can
  // hang, and whatever is still open when the step (or the child) ends is closed then.
  int call(CallName name, Returned returned, std::string_view detail = {}) {
    return record_call(name, returned, detail, AF_UNSPEC);
  }
  int call(CallName name, Returned returned, const Endpoint& where) {
    return record_call(name, returned, where.text(), where.family());
  }
  // The same for a call the scenario cannot go on without: when it fails, the failure is
  // recorded and ScenarioBroke thrown. The step's own answer is always made with call(), never must().
  int must(CallName name, Returned returned, std::string_view detail = {}) {
    return required(record_call(name, returned, detail, AF_UNSPEC), returned);
  }
  int must(CallName name, Returned returned, const Endpoint& where) {
    return required(record_call(name, returned, where.text(), where.family()), returned);
  }
  // A line of narration that is not a call: "waits for Ctrl+C".
  void note(std::string_view text);
  // Sends `text` and records it (send, in full or the error).
  int send_text(int fd, std::string_view text);
  // Receives once and records what came: the bytes, or end of stream (0), or the error.
  std::string receive_text(int fd);
  // The same for a message the scenario cannot go on without (the client's request a server
  // answers): when recv fails, or the stream ends before a byte came, the event is recorded and
  // ScenarioBroke thrown. A server that never got the request must not be narrated answering it.
  std::string must_receive_text(int fd);
  // For a server child: sleeps until a signal ends the process (or its lifetime runs out).
  [[noreturn]] void wait_for_signal();

  [[nodiscard]] const std::string& actor() const noexcept { return actor_; }
  [[nodiscard]] Role role() const noexcept { return role_; }
  // Another actor in the same process, reporting over the same channel: a server and its
  // clients in one network namespace.
  [[nodiscard]] Trace alongside(std::string actor, Role role) const;
  // Reads the kernel's socket table as this process sees it (in a namespace: the namespace's)
  // and records each row with the port at either end as a socket_table event whose value is
  // its TcpState; a table that cannot be read is recorded as that call's failure.
  void report_sockets(std::uint16_t port, Transport transport = Transport::tcp);
  // The TIME_WAIT rows with the port at either end, each recorded as a `timer` event whose value
  // is the milliseconds left on its timer (the row as its detail).
  void report_timers(std::uint16_t port);
  // A quiet trace (many clients in a loop) records failures and evidence but prints and lists
  // only the failures; the experiment narrates the totals itself.
  Trace& quiet() noexcept {
    quiet_ = true;
    return *this;
  }
  // A silent trace records everything, failures too, without printing or listing it: for one
  // call repeated hundreds of times whose last result the experiment reports itself.
  Trace& silent() noexcept {
    silent_ = true;
    return *this;
  }
  // Across execve (17: a server that execs its successor and keeps its listener): moves this
  // child's report channel to a descriptor (10 or above) that survives exec and returns the
  // environment entry that names it. The new program image resumes reporting with
  // resume_after_exec(), which reads that entry; nullopt when there is none (not started so).
  // When the copy cannot be made (a descriptor limit of 10 or less), the fcntl failure is
  // recorded and keep_across_exec returns nullopt: the new image could not report.
  std::optional<std::string> keep_across_exec();
  static std::optional<Trace> resume_after_exec();

 private:
  friend class Lab;
  Trace(Lab* lab, int pipe_fd, std::string actor, Role role)
      : lab_(lab), pipe_fd_(pipe_fd), actor_(std::move(actor)), role_(role) {}
  void record(Event event);
  // call() and must(): `family` is the named endpoint's (AF_UNSPEC when none), so that the lab
  // knows from the type, not from the text, when a step used IPv6.
  int record_call(CallName name, Returned returned, std::string_view detail, int family);
  // must()'s second half: throws ScenarioBroke when the call failed.
  int required(int value, const Returned& returned);
  // report_sockets() and report_timers(): one row of the table, or the read's failure (-1, errno).
  void record_row(Call call, long value, int error, std::string detail, int family = AF_UNSPEC);
  Lab* lab_;     // set in the parent
  int pipe_fd_;  // set in a child: where its events go
  std::string actor_;
  Role role_;
  int origin_ = 0;
  bool quiet_ = false;
  std::int64_t last_at_ = 0;  // when this actor's previous call returned
  bool silent_ = false;
};

// A child process running one actor's code, always reaped.
class Process {
 public:
  [[nodiscard]] pid_t pid() const noexcept { return child_.pid(); }
  // Narrates the events until the child's next report of `call` since the last wait_for
  // (whatever its outcome) and returns it; nullopt when the child ended or went quiet first.
  std::optional<Event> wait_for(CallName call, Millis deadline = kDefaultDeadline);
  // The same, for a point the scenario needs: throws ScenarioBroke unless `call` was reported
  // and succeeded. When the child never reported it, the step is stopped on the child's last
  // failed call (the must() that ended it), if it reported one.
  Event must_reach(CallName call, Millis deadline = kDefaultDeadline);
  // Reaps the child (after a signal, or when its body returned) and records how it ended.
  std::optional<ExitStatus> reap(Millis deadline = kDefaultDeadline);

 private:
  friend class Lab;
  Process(Lab* lab, ChildProcess child, std::string actor, Role role, int origin)
      : lab_(lab), child_(std::move(child)), actor_(std::move(actor)), role_(role), origin_(origin) {}
  Lab* lab_;
  std::size_t cursor_ = 0;  // events before this index were already looked at by wait_for
  ChildProcess child_;
  std::string actor_;
  Role role_;
  int origin_;
};

// What the scenario needs to have seen before its outcome means anything.
enum class Evidence {
  listening,            // a server's listen() returned 0
  accepted,             // an accept() returned a connection
  server_closed_first,  // the client read end of stream before it closed: the server's FIN came first
  client_closed_first,  // the server read end of stream before it closed: the client's FIN came first
  server_stopped,       // the old server process was reaped after the signal sent to it
  forked,               // a fork() returned a child that serves the connection
  table_read,           // the kernel's socket table was read (the situation is known)
  time_wait_seen,       // the table showed a TIME_WAIT of this step's port
  exchanged,            // a server received the client's message, and the client the answer
};
std::string_view evidence_words(Evidence evidence);

// What the socket table held for the port just before the call that answers the step. It selects
// the explanation; it is never printed as an outcome.
enum class Situation {
  any,
  unobserved,
  clean,
  listener,
  connection,
  time_wait,
  bound_only,
  // Nothing held the port itself, but a TIME_WAIT kept the client's end of a connection to it
  // (its ephemeral port): show_sockets() says clean, the experiment refines it (03).
  client_time_wait,
  // Where connections went when two sockets listen on one port (06, 07): each to the socket
  // bound to the address it was sent to (or the wildcard when none is), or otherwise.
  each_reached_its_own,
  most_specific_wins,
  other_delivery,
  // Which calls came before the answer (07, 08).
  first_listening,
  second_bind_refused,
  // Whether a connection with the new one's four numbers already existed (08).
  tuple_taken,
  tuple_free,
  // The IPv6 socket's IPV6_V6ONLY, read back and confirmed by where an IPv4 client went (11).
  dual_stack,
  v6_only,
  // Chosen by an experiment from what it counted, not read from the table:
  shared,             // two sockets hold the port at once (09: two listeners; 12: both got datagrams)
  nothing_delivered,  // the peer read none of the bytes send() had taken (10)
  partly_delivered,   // ... some of them
  all_delivered,      // ... all of them
  all_to_first,       // every datagram went to the socket bound first (12)
  all_to_second,      // ... to the socket bound second
  none_arrived,       // no datagram arrived within the deadline
  // Experiment-specific: what else the step saw that selects its explanation.
  all_in_time_wait,          // 13: every connection made left its client port in TIME_WAIT
  reused_time_wait_port,     // 13: the connect after the wait took a port still in TIME_WAIT
  new_port,                  // 13: ... took a port that was not in TIME_WAIT
  never_exhausted,           // 13: the ports never ran out
  timer_within_a_minute,     // 14: the TIME_WAIT timer read at most 60 s
  timer_beyond_a_minute,     // 14: ... more than 60 s
  under_a_minute,            // 14: the port was free again in less than 55 s
  about_a_minute,            // 14: ... in 55 to 70 s
  over_a_minute,             // 14: ... later than 70 s
  never_held,                // 14: the restart bound at once
  still_held,                // 14: still refused when the program gave up
  cells_as_documented,       // 15: every cell of the block gave the documented outcome
  cells_differ,              // 15: some cells differ from the documented rule
  cells_skipped,             // 15: the cells that ran are as documented; some could not run (no IPv6)
  ran_out_sooner,            // 18: bind(port 0) before connect() made fewer connections than connect() alone
  inside_own_range,          // 18: every port connect() took came from the socket's IP_LOCAL_PORT_RANGE
  only_reuseport,            // 18: the OR'd option name set SO_REUSEPORT and left SO_REUSEADDR at 0
  time_wait_reopened,        // 16: the TIME_WAIT row was there before the SYN and gone after it
  time_wait_ended,           // 16: ... before the crafted RST and gone after it
  time_wait_kept,            // 16: ... and still there after the crafted segment
  timer_restarted,           // 16: the TIME_WAIT timer read higher after the crafted FIN
  timer_not_restarted,       // 16: ... did not
  new_server_not_listening,  // 17: the restarted server never listened (its bind failed)
  served_after_restart,      // 17: the new server answered requests after the restart
};
std::string_view situation_key(Situation situation);  // "time-wait", as in the JSON

// The outcome of a step: 0 or an errno from the call that answers it.
struct Observation {
  Call call = Call::note;
  int outcome = 0;
  Situation situation = Situation::any;
  std::vector<std::pair<std::string, std::string>> facts;  // extra JSON members: key, JSON text
  std::optional<std::string> could_not_run;                // the call that failed and its errno
  std::optional<std::string> skipped;                      // the system cannot run it: why
  // The part of the claim the outcome alone cannot show (how long, a whole grid): whether it was
  // observed to hold. A verdict of "holds" needs the outcome and this; nullopt: nothing more.
  std::optional<bool> detail_holds;

  Observation& fact(std::string key, std::string json_text) {
    facts.emplace_back(std::move(key), std::move(json_text));
    return *this;
  }
  [[nodiscard]] std::optional<std::string> fact(std::string_view key) const;
  // A fact that is plain text: quoted and escaped for JSON here.
  Observation& fact_text(std::string key, std::string_view text);
};

class Lab {
 public:
  Lab(const Narrator& narrator, std::uint16_t port, bool json, bool step_mode = false);
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  // The step's port: free when the step starts.
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const Narrator& narrator() const noexcept { return narrator_; }
  [[nodiscard]] bool json() const noexcept { return json_; }
  [[nodiscard]] Endpoint wildcard() const { return *Endpoint::parse("0.0.0.0", port_); }
  [[nodiscard]] Endpoint loopback() const { return *Endpoint::parse("127.0.0.1", port_); }
  [[nodiscard]] Endpoint address(std::string_view ip) const;  // ip with the step's port

  // Another port the kernel says is free, for steps that need a second one.
  [[nodiscard]] Result<std::uint16_t> fresh_port() const;
  // An actor in this process: "client", "socket A".
  Trace actor(std::string name, Role role = Role::other);
  // Forks a real child process that runs body as `name`; its events come back over the pipe. The
  // child exits 0 when body returns, 1 when a must() call in it failed.
  // When fork() fails, the failure is recorded (fork -> EAGAIN) and ScenarioBroke thrown.
  Process spawn(std::string name, Role role, const std::function<void(Trace&)>& body, Millis lifetime = Millis(10000));
  // "you" in the narration: what a person at the keyboard does (press Ctrl+C, start the server).
  void you(std::string_view text);
  // With --step: stops here until Enter, saying what to look at meanwhile (the sockets are live).
  void pause(std::string_view what_to_look_at);
  // Prints the sockets with the port at either end, as the kernel lists them now (after letting
  // passing closing states settle), and records what was seen: TIME_WAIT, listener, ...
  Situation show_sockets(std::string_view caption, Transport transport = Transport::tcp);
  // The same for another port than the step's (a client's local port, a second server's).
  Situation show_sockets(std::string_view caption, std::uint16_t port, Transport transport = Transport::tcp);
  // The rows the last show_sockets() listed; nullptr when it could not read the table.
  [[nodiscard]] const std::vector<SocketEntry>* shown_sockets() const noexcept;
  // The same rows as a JSON array of their texts; null when the table could not be read.
  [[nodiscard]] std::string shown_sockets_json() const;
  // The TIME_WAIT rows of this step's port, with whose they are and the time left; adds facts.
  void report_time_waits(Observation& observation);
  // How many TIME_WAIT rows the last show_sockets() listed on one side of the step's port: the
  // server's (the port is the local end) or the client's (the port is the remote end).
  [[nodiscard]] int time_waits_shown(Role side) const;

  // The step's answer: `answer` is the event of the call that decides it (from Trace or wait_for).
  // A verdict needs every piece of evidence; otherwise the observation is "could not run".
  Observation observe(const std::optional<Event>& answer, std::initializer_list<Evidence> needs,
                      Situation situation = Situation::any);
  Observation observe(Call call, long returned_value, int error, std::initializer_list<Evidence> needs,
                      Situation situation = Situation::any);
  // Not a failure: this system cannot run the step (no IPv6, not root, no namespaces): why.
  Observation skip(CallName call, std::string why);
  // Could not run: names the first call that failed in this step, or what was missing.
  Observation could_not_run(std::string_view what_was_missing);
  // The same, naming this failed call (when an earlier failure was part of the scenario). Both
  // forms add the step's calls as the "calls" fact: the evidence for what stopped it.
  Observation could_not_run(std::string_view what_was_missing, const Event& failed);
  // The longest timer of a TIME_WAIT bound to the step's port in the table show_sockets last
  // listed; nullopt when it listed none.
  [[nodiscard]] std::optional<double> time_wait_seconds_left() const;
  [[nodiscard]] bool saw(Evidence evidence) const;
  [[nodiscard]] const std::vector<Event>& events() const noexcept { return events_; }
  // The events as a JSON array of their texts, for the step's record.
  [[nodiscard]] std::string events_json() const;
  // The last event of this call and role, if any.
  [[nodiscard]] const Event* last(Call call, Role role) const;
  // The rows show_sockets() listed last (the port at either end), for the facts a step reports.
  [[nodiscard]] const std::vector<SocketEntry>& table() const noexcept { return last_table_; }

  // Packet ladders (the runner's --ladder and --pcap): the run's capture on the private
  // namespace's lo. From then on show_sockets first shows the segments of the step's ports since
  // the last look, and so does show_segments.
  void record_wire(wire::Wire& wire);
  // Whether this run's processes already share a private network namespace of their own (the
  // runner's, for --ladder and --pcap), where the capture listens on lo.
  [[nodiscard]] bool shares_private_network() const noexcept;
  void show_segments();
  // At the end of the step: the last segments, and the "segments" fact ("client SYN", "server
  // FIN ACK", ...), or "ladder_missing" with the reason there is no capture.
  void report_segments(Observation& observation);
  // The step's segments so far as a Mermaid sequenceDiagram (the runner's --mermaid FILE); empty
  // without a capture or segments.
  [[nodiscard]] std::string mermaid_diagram() const;

 private:
  friend class Trace;
  friend class Process;
  void record(Event event);
  void pump(Millis deadline);                        // reads child events that are waiting (or come within deadline)
  std::optional<Event> read_one(Millis deadline);    // one event from the pipe
  std::set<pid_t> running_;                          // spawned and not yet reaped
  void remember_in_order(std::vector<Event> batch);  // by the time the calls returned
  void remember(Event event);
  void record_failure(Call call, int error, std::string detail);
  void own_descriptor(int fd);

  const Narrator& narrator_;
  std::uint16_t port_;
  bool json_;
  bool step_mode_;
  int next_origin_ = 1;
  int pipe_error_ = 0;  // pipe2() failed: no child can report
  UniqueFd pipe_read_;
  UniqueFd pipe_write_;
  std::string buffered_;
  std::vector<Event> events_;
  std::set<Evidence> seen_;
  bool server_heard_ = false;  // a server's recv returned bytes (Evidence::exchanged)
  bool client_heard_ = false;  // ... a client's recv
  std::set<int> owned_;        // descriptors the step opened; closed when it ends
  std::vector<SocketEntry> last_table_;
  // Whether a table read needs the IPv6 connections too (socket_table.hpp, Ipv6Rows): once an
  // IPv6 address went by in a call, or a call failed and the table may have to explain why.
  bool ipv6_rows_needed_ = false;
  bool last_table_read_ = false;          // whether last_table_ comes from a table that could be read
  std::optional<std::size_t> broken_at_;  // the failed event a must() (or spawn) stopped the step on
  std::int64_t last_at_ = 0;              // when a call of this process last returned (Trace::call)
  std::unique_ptr<wire::StepWire> wire_;  // with --ladder or --pcap
};

// --- The experiment's table of claims, below its code ---------------------------------------

inline constexpr int kOk = 0;

struct Explanation {
  std::optional<int> outcome;  // 0 (ok), an errno; nullopt for any
  Situation situation = Situation::any;
  std::string text;
};

// Who states the claim: one of the five articles; a reference that is not one of them (a man
// page, an RFC, an engineers' report or common belief); or nobody, because it is our reading of
// an article. The summary counts each apart: "holds: N" counts only what the articles said.
enum class Said { article, reference, inference };

struct Step {
  std::string id;
  std::string preview;  // what is about to happen (shown by --step and as the step's heading)
  std::string claim;    // the article's claim, in our words
  std::string source;   // which article (title; original source)
  int claimed = 0;      // the outcome the claim predicts: 0 or an errno
  Said said = Said::article;
  std::string elsewhere;  // where the claim is documented to hold when Linux differs
  std::vector<Explanation> explanations;
  std::function<Observation(Lab&)> run;
  bool long_running = false;  // runs only with --long
};

// An option only one experiment offers (15's --svg FILE), listed in its --help after the common
// ones. `start` gets the value before the first step and says what is wrong with it (bad input,
// exit status 2) or nullopt; `finish` runs after the last step and says why it failed (exit
// status 1) or nullopt.
struct ExtraOption {
  std::string name;        // "--svg"
  std::string value_name;  // "FILE"
  std::string help;
  std::function<std::optional<std::string>(const std::string& value)> start;
  std::function<std::optional<std::string>(const Narrator& narrator)> finish;
};

struct Experiment {
  std::string summary;  // shown by --help and at the start; number, slug and title: the manifest
  std::vector<Step> steps;
  std::vector<ExtraOption> options;  // most experiments have none
};

// The expected Linux outcome of a step, from experiments/expected_outcomes.txt (the one table
// the tests read too): the call and 0 or an errno; nullopt when the table has no row.
struct Expected {
  Call call;
  int outcome;
};
std::optional<Expected> expected_outcome(std::string_view number, std::string_view step_id);

// --- Private network namespaces (Linux) ------------------------------------------------------

// For the body of a spawned child: unshare(CLONE_NEWUSER | CLONE_NEWNET), map this user to root
// inside (/proc/self/uid_map), bring lo up, and write the sysctls there, in order
// ({"net.ipv4.tcp_tw_reuse", "0"}); each step is recorded on `t`. The host's settings are never
// touched: no sysctl is written unless the process is seen in a new network namespace. When a
// call fails it is recorded and ScenarioBroke thrown (unshare fails when this user may not create
// namespaces: that event tells the parent why the step cannot run here).
void enter_private_network(Trace& t, const std::vector<std::pair<std::string, std::string>>& sysctls);
// Called just after unshare(CLONE_NEWUSER | CLONE_NEWNET): moves this process into a network
// namespace whose connection table is its own (Linux 6.1), so that reading it is quick.
void own_connection_table();
// The same for a step whose segments belong in the ladder, and that may change a setting between
// calls. When the run already lives in a private network namespace of its own
// (Lab::shares_private_network: --ladder, --pcap), the child stays there, so the capture sees
// its segments, writes only the sysctls, and puts back the values it changed when it goes out of
// scope (the run's later steps share the namespace). Otherwise it enters one of its own as above.
//
//   const PrivateNetwork network(t, lab, {{"net.ipv4.tcp_rfc1337", "0"}});
//   network.set("net.ipv4.tcp_tw_reuse", "1");  // recorded as a sysctl call
class PrivateNetwork {
 public:
  PrivateNetwork(Trace& t, const Lab& lab, const std::vector<std::pair<std::string, std::string>>& sysctls);
  ~PrivateNetwork();
  PrivateNetwork(const PrivateNetwork&) = delete;
  PrivateNetwork& operator=(const PrivateNetwork&) = delete;
  void set(const std::string& name, const std::string& value) const;

 private:
  Trace& t_;
  bool shared_;
  mutable std::vector<std::pair<std::string, std::string>> changed_;  // name, value before (shared only)
};
// A sysctl's value as this process sees it ("net.ipv4.tcp_tw_reuse" -> "2"); nullopt when absent.
std::optional<std::string> sysctl_value(std::string_view name);

// Why no experiment can run here, or nullopt: loopback must carry a connection, and a port the
// user chose must be free. Every program checks it first; run-all once for a whole run.
std::optional<std::string> preflight(std::optional<std::uint16_t> user_port);

// Parses the common flags, runs the steps, prints narration or JSON Lines. `number` is the
// experiment's manifest number (PORTREUSE_EXPERIMENT, set by CMake).
int run(const char* number, const Experiment& experiment, int argc, const char* const* argv);

}  // namespace portreuse::lab
