// The articles' server as a real child process: it binds, listens, answers a client, and is
// stopped by a real signal. It never prints; it reports each call's outcome to the parent over a
// pipe, so the parent can narrate in order and decide from what really happened.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "portreuse/child.hpp"
#include "portreuse/event_pipe.hpp"
#include "portreuse/net.hpp"

namespace portreuse {

enum class Reply {
  uppercase,  // the Chinese article's echo server: answers in upper case
  receipt,    // the Ctrl+C article's server: answers with a fixed acknowledgement
};

enum class FirstToClose { server, client };

struct ServerPlan {
  Endpoint address;
  SocketOptions options;
  // Set right after the bind() attempt, reported as its own "setsockopt" event: the mistake of
  // setting SO_REUSEADDR too late, when bind() has already decided.
  SocketOptions options_after_bind;
  bool listen = true;
  int clients = 0;  // connections to serve; then it idles until stopped
  Reply reply = Reply::uppercase;
  FirstToClose first_to_close = FirstToClose::server;
  bool fork_per_connection = false;  // the HP-UX daemon: a child process serves each connection
  Millis lifetime{10000};            // it exits by itself after this, so nothing outlives a run
};

struct ServerEvent {
  pid_t pid = 0;
  std::string kind;     // setsockopt, bind, listen, accept, received, replied, closed, peer-closed, forked
  std::string outcome;  // "ok" or an errno name
  std::string detail;   // peer address, message text, child pid

  [[nodiscard]] bool ok() const { return outcome == "ok"; }
};

// The text the receipt server answers with.
inline constexpr const char* kReceiptText = "message received";

// What a server of this plan answers to `message`.
std::string reply_to(Reply reply, std::string_view message);

class ServerProcess {
 public:
  static Result<ServerProcess> start(const ServerPlan& plan);

  [[nodiscard]] pid_t pid() const noexcept { return process_.pid(); }
  ChildProcess& process() noexcept { return process_; }

  // The next report from the server (or one of its connection children); nullopt when none came
  // within the deadline or the server is gone.
  std::optional<ServerEvent> next_event(Millis deadline = kDefaultDeadline);
  // Skips reports until one of this kind arrives.
  std::optional<ServerEvent> await(std::string_view kind, Millis deadline = kDefaultDeadline);

 private:
  ServerProcess(ChildProcess process, UniqueFd events) : process_(std::move(process)), events_(std::move(events)) {}
  ChildProcess process_;
  PipeEventReader events_;
};

}  // namespace portreuse
