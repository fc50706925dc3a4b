// 04-killed-daemon: a killed daemon whose child still serves a connection.
//
// Shows: a daemon listens on 0.0.0.0:P and forks a child for each connection it accepts. The
// listening process is killed with SIGKILL while its child still holds an ESTABLISHED connection
// on port P. Restarting the daemon without SO_REUSEADDR fails; with SO_REUSEADDR on the old and
// the new listener it works, and the child's connection is left alone.
//
// Article: "Example of the SO_REUSEADDR Option" (HP-UX, BSD Sockets Interface Programmer's Guide,
// B2355-90136, chapter 3). Lesson: lessons/04-killed-daemon.md
//
// Usage: build/default/bin/04-killed-daemon [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

// Both steps run this scenario; they differ only in whether the old and the new daemon set
// SO_REUSEADDR=1 before bind().
Observation restart_killed_daemon(Lab& lab, bool reuse_address) {
  const auto address = lab.wildcard();
  const auto port = std::to_string(lab.port());

  // The HP-UX daemon: it accepts, forks a child to serve the connection and closes its own copy.
  // (A real daemon would loop back to accept(); this one has one client and waits for its end.)
  lab.you(reuse_address ? "start the daemon (SO_REUSEADDR=1)" : "start the daemon (no socket options)");
  auto daemon = lab.spawn("daemon", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (reuse_address) {
      const int on = 1;
      t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    }
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    const int pid = t.must("fork", ::fork());
    if (pid == 0) {
      // The child: a new process with the same Trace, which now speaks as "daemon's child".
      // alarm() is not inherited across fork(), so the child sets its own bound on its life.
      ::alarm(10);
      t.must("close", ::close(listener));                        // only the daemon listens
      t.send_text(connection, t.must_receive_text(connection));  // echo: the client's hello, when it came
      t.wait_for_signal();  // it keeps the connection open, serving, until it is stopped
    }
    t.must("close", ::close(connection));  // the child has its own copy of the connection
    t.wait_for_signal();
  });
  daemon.must_reach("listen");

  // A client talks to the daemon's child and keeps the connection open.
  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);  // the child's echo
  daemon.must_reach("fork");
  lab.pause("daemon, child, connection: ss -tano sport = :" + port);

  // kill -9 on the daemon: its listener goes, the child and its connection stay.
  auto you = lab.actor("you");
  you.must("kill", ::kill(daemon.pid(), SIGKILL), "SIGKILL to the daemon, not to its child");
  daemon.reap();
  lab.pause("the child still serves: ss -tano sport = :" + port);
  // Read after the pause: what the restart meets is what the kernel holds now.
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");

  lab.you(reuse_address ? "start the daemon again (SO_REUSEADDR=1)" : "start the daemon again (no socket options)");
  auto restarted = lab.spawn("daemon again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (reuse_address) {
      const int on = 1;
      t.must("setsockopt", ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), "SO_REUSEADDR=1");
    }
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  auto observation =
      lab.observe(restarted.wait_for("bind"),
                  {Evidence::accepted, Evidence::forked, Evidence::exchanged, Evidence::server_stopped}, left_behind);
  client.call("close", ::close(fd));  // the step then ends the child with its daemon's group
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const std::string kSource = "\"Example of the SO_REUSEADDR Option\" (HP-UX B2355-90136, ch. 3)";

const Experiment kExperiment{
    .summary =
        "A forking daemon is killed while one of its children still talks to a client. The connection the child "
        "holds is bound to the daemon's port, so the restarted daemon has to share the port with it: watch when "
        "the kernel allows that.",
    .steps =
        {
            Step{
                .id = "restart-while-child-holds-connection",
                .preview = "A daemon on 0.0.0.0:P forks a child for a client; kill the daemon (SIGKILL) while the "
                           "child still serves, then start it again without SO_REUSEADDR.",
                .claim = "Restarting a killed daemon fails while a connection it accepted is still open: the "
                         "wildcard bind matches the address of that connection.",
                .source = kSource,
                .claimed = EADDRINUSE,
                .explanations =
                    {
                        {EADDRINUSE, Situation::connection,
                         "The child's ESTABLISHED socket was made by accept() on the old listener, so it carries "
                         "the listener's local port P and sits in the same bind bucket as any socket bound to P. "
                         "The new listener asked for 0.0.0.0:P, which overlaps every local address, and it did not "
                         "set SO_REUSEADDR: without the option on both sockets Linux lets nothing else share the "
                         "port, not even a connection whose listener is already gone."},
                        {EADDRINUSE, Situation::listener,
                         "A listening socket still held the port after the kill: some process besides the killed "
                         "daemon still had the listener open (the socket table above shows it)."},
                        {EADDRINUSE, Situation::time_wait,
                         "Only a TIME_WAIT socket was left on the port, so the child's connection had already "
                         "closed; the refusal came from that TIME_WAIT socket (experiment 02), not from a live "
                         "connection."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused. The socket table above shows what the kernel still held for the "
                         "port."},
                        {kOk, Situation::clean,
                         "Nothing was bound to the port any more when the daemon restarted: the child's connection "
                         "had ended before the restart, so this run did not test the article's situation."},
                        {kOk, Situation::any,
                         "The new listener bound 0.0.0.0:P although a connection on P was still open and neither "
                         "socket had SO_REUSEADDR. This kernel follows other rules than the ones this lesson "
                         "describes."},
                    },
                .run = [](Lab& lab) { return restart_killed_daemon(lab, false); },
            },
            Step{
                .id = "restart-while-child-holds-connection-reuseaddr",
                .preview = "The same, but the old and the new daemon set SO_REUSEADDR=1 before bind().",
                .claim = "With SO_REUSEADDR set, bind() ignores the match with the open connection and the killed "
                         "daemon can be restarted.",
                .source = kSource,
                .claimed = kOk,
                .explanations =
                    {
                        {kOk, Situation::connection,
                         "The new listener set SO_REUSEADDR, and so did the old one: the child's ESTABLISHED socket "
                         "was cloned from that listener by accept() and kept its SO_REUSEADDR=1. Linux lets two "
                         "sockets share a port when both have the option and the one already there is not "
                         "listening, so the bind went through next to the child's connection (the table above)."},
                        {kOk, Situation::any,
                         "The new listener bound the port at once. The socket table above shows what it shared the "
                         "port with."},
                        {EADDRINUSE, Situation::listener,
                         "A listening socket still held the port after the kill. SO_REUSEADDR never lets a second "
                         "socket share a port with a live listener on Linux (experiment 07)."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused although both daemons set SO_REUSEADDR and only a connection, not "
                         "a listener, held the port. This kernel follows other rules than the ones this lesson "
                         "describes; the socket table above shows what was there."},
                    },
                .run = [](Lab& lab) { return restart_killed_daemon(lab, true); },
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
