// 10-abortive-close: SO_LINGER {1, 0}, closing with a reset instead of a goodbye.
//
// Shows: a server that closes its connections with SO_LINGER {on, 0 s} leaves no TIME_WAIT, so it
// restarts at once; and the price: the peer gets a reset, and what the server had sent but the
// network had not yet delivered is thrown away.
//
// Beyond the articles: the shortcut often offered instead of SO_REUSEADDR (socket(7), SO_LINGER).
// Lesson: lessons/10-abortive-close.md
//
// Usage: build/default/bin/10-abortive-close [--port P] [--json] [--no-color] [--step]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstddef>
#include <string>

#include "portreuse/lab.hpp"

namespace {

using namespace portreuse::lab;

// A bound on the long answer, in case a kernel buffered without limit.
constexpr long kMaxAnswer = 64L << 20;

// Experiment 02's restart, but the old server closes its connection with SO_LINGER {1, 0}.
Observation restart_after_linger_abort(Lab& lab) {
  const auto address = lab.wildcard();

  lab.you("start the server");
  auto server = lab.spawn("server", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    t.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
    t.must("listen", ::listen(listener, 8));
    const int connection = t.must("accept", ::accept(listener, nullptr, nullptr));
    t.must_receive_text(connection);  // the client's hello: no answer without it
    t.send_text(connection, "message received");
    const linger abort{1, 0};  // on, 0 seconds: close() resets the connection at once
    t.must("setsockopt", ::setsockopt(connection, SOL_SOCKET, SO_LINGER, &abort, sizeof abort), "SO_LINGER={1, 0}");
    t.must("close", ::close(connection));  // the server closes first, with a reset (RST), not a FIN
    t.wait_for_signal();
  });
  server.must_reach("listen");

  auto client = lab.actor("client", Role::client);
  const auto to = lab.loopback();
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, to.raw(), to.raw_length()), to);
  client.send_text(fd, "hello from the client");
  client.receive_text(fd);  // the receipt
  server.must_reach("close");
  // The connection is gone on both sides already: the client's socket was reset. (What its next
  // read says is the next step's subject.)
  client.must("close", ::close(fd));
  lab.show_sockets("the kernel's sockets for the port now:");

  auto you = lab.actor("you");
  you.must("kill", ::kill(server.pid(), SIGINT), "SIGINT (Ctrl+C) to the server");
  server.reap();
  const auto left_behind = lab.show_sockets("what the kernel still holds for the port:");
  lab.pause("no TIME_WAIT left by the reset: ss -tano sport = :" + std::to_string(lab.port()));

  lab.you("start the server again: a new process, no socket options");
  auto restarted = lab.spawn("server again", Role::server, [&](Trace& t) {
    const int listener = t.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
    if (t.call("bind", ::bind(listener, address.raw(), address.raw_length()), address) == 0) {
      t.call("listen", ::listen(listener, 8));
    }
  });
  // The old server's close (after its SO_LINGER) was reached above: the abort happened.
  auto observation = lab.observe(restarted.wait_for("bind"),
                                 {Evidence::accepted, Evidence::exchanged, Evidence::server_stopped}, left_behind);
  lab.report_time_waits(observation);
  return observation;
}

// The server answers a request with a long reply and closes with SO_LINGER {1, 0} at once.
Observation linger_abort_peer_read(Lab& lab) {
  const auto address = lab.loopback();

  auto server = lab.actor("server", Role::server);
  const int listener = server.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  server.must("bind", ::bind(listener, address.raw(), address.raw_length()), address);
  server.must("listen", ::listen(listener, 8));

  auto client = lab.actor("client", Role::client);
  const int fd = client.must("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  client.must("connect", ::connect(fd, address.raw(), address.raw_length()), address);
  const int connection = server.must("accept", ::accept(listener, nullptr, nullptr));
  client.send_text(fd, "send me the file");
  client.note("does not read for a moment");
  server.must_receive_text(connection);  // the request: the answer below is sent for it

  // The server sends the file 64 KiB at a time without waiting (MSG_DONTWAIT) until the kernel
  // takes no more: every byte that send() took, the program believes sent.
  auto sending = lab.actor("server", Role::server).quiet();
  const std::string block(std::size_t{64} * 1024, 'x');
  long queued = 0;
  while (queued < kMaxAnswer) {
    const Returned sent = ::send(connection, block.data(), block.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent.error == EAGAIN) break;  // both sides' buffers are full
    queued += sending.must("send", sent, "64 KiB, MSG_DONTWAIT");
  }
  server.note("send() took " + std::to_string(queued) + " bytes; the next would block (EAGAIN)");
  lab.pause("the answer waits in Send-Q: ss -tn sport = :" + std::to_string(lab.port()));

  const linger abort{1, 0};
  server.must("setsockopt", ::setsockopt(connection, SOL_SOCKET, SO_LINGER, &abort, sizeof abort), "SO_LINGER={1, 0}");
  server.must("close", ::close(connection));  // a reset, before the client has read anything

  // The client now reads until its stream ends: with 0 (end of stream) or an error.
  auto reading = lab.actor("client", Role::client).quiet();
  std::array<char, 65536> buffer{};
  long read = 0;
  Returned last = ::recv(fd, buffer.data(), buffer.size(), 0);
  reading.call("recv", last);
  while (last.value > 0) {
    read += last.value;
    last = ::recv(fd, buffer.data(), buffer.size(), 0);
    reading.call("recv", last);
  }
  const Event ended = *lab.last(Call::recv, Role::client);  // the read that ended the stream
  client.note("read " + std::to_string(read) + " bytes in all before the stream ended");
  if (read < queued) {
    lab.actor("kernel").note(std::to_string(queued - read) + " bytes that send() took never reached the client");
  }
  client.call("recv", ::recv(fd, buffer.data(), buffer.size(), 0));  // one more read: what now?
  const std::string after = lab.last(Call::recv, Role::client)->text();

  server.must("close", ::close(listener));
  lab.show_sockets("the kernel's sockets for the port, once the server stopped listening:");
  const auto left = lab.table().size();
  client.must("close", ::close(fd));

  const Situation delivered = read == 0       ? Situation::nothing_delivered
                              : read < queued ? Situation::partly_delivered
                                              : Situation::all_delivered;
  // The server accepted, and its setsockopt and close (the abort) returned 0, or we would not be here.
  auto observation = lab.observe(ended, {Evidence::accepted}, delivered);
  observation.fact("bytes_sent_by_server", std::to_string(queued));
  observation.fact("bytes_read_by_client", std::to_string(read));
  observation.fact("bytes_lost", std::to_string(queued > read ? queued - read : 0));
  observation.fact("read_after_error", "\"" + after + "\"");
  observation.fact("sockets_after_reset", std::to_string(left));
  return observation;
}

// ---- The claims, and the explanations the observed outcome chooses from ----------------------

const Experiment kExperiment{
    .summary =
        "Set SO_LINGER to {on, 0 s} and close() sends a reset instead of the usual FIN: no TIME_WAIT, so "
        "the port is free at once. Watch what it costs: the peer's next read fails, and data the server "
        "had already handed to send() never arrives.",
    .steps =
        {
            Step{
                .id = "restart-after-linger-abort",
                .preview =
                    "The server answers a client and closes with SO_LINGER {1, 0}; Ctrl+C; restart without options.",
                .claim = "A server that closes its connections with SO_LINGER set to {on, 0 s} leaves no TIME_WAIT "
                         "behind, so it restarts at once without SO_REUSEADDR.",
                .source = "socket(7), SO_LINGER (a common shortcut, not in the five articles)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {kOk, Situation::clean,
                         "With a zero linger time, close() does not start the FIN exchange: the kernel sends a reset "
                         "(RST) and destroys the connection on the spot. A connection that ends with a reset never "
                         "enters TIME_WAIT, so nothing of it stayed bound to the port (the table above is empty) and "
                         "the new server bound at once. Compare experiment 02, where a normal close left a "
                         "TIME_WAIT; the next step shows what the reset costs the client."},
                        {kOk, Situation::any,
                         "The new server bound at once; the socket table above shows what was left on the port."},
                        {EADDRINUSE, Situation::time_wait,
                         "A TIME_WAIT socket held the port although the server closed with SO_LINGER {1, 0}: on this "
                         "kernel a zero linger time did not turn the close into a reset."},
                        {EADDRINUSE, Situation::any,
                         "The restart was refused; the socket table above shows what still held the port."},
                    },
                .run = restart_after_linger_abort,
            },
            Step{
                .id = "linger-abort-peer-read",
                .preview = "The server queues a long answer, closes with SO_LINGER {1, 0}; then the client reads.",
                .claim = "Once send() has returned, the data is on its way: closing with a zero linger time only "
                         "ends the connection faster, and the peer still reads everything, then end of stream.",
                .source = "a common belief about SO_LINGER {1, 0} (not in the five articles)",
                .claimed = kOk,
                .said = Said::reference,
                .explanations =
                    {
                        {ECONNRESET, Situation::partly_delivered,
                         "The reset ended the connection at once on both sides. The client could still read what "
                         "had already arrived in its own receive buffer (Linux keeps that), then its read failed "
                         "with ECONNRESET instead of a clean end of stream. Everything still waiting in the "
                         "server's send buffer was thrown away with the connection: the bytes that never reached "
                         "the client (counted above) had been accepted by send(), so the server believed them "
                         "sent. A reset also ends TIME_WAIT's protection: there is no waiting period to absorb "
                         "late segments of this connection."},
                        {ECONNRESET, Situation::nothing_delivered,
                         "The client's very first read failed with ECONNRESET: the reset took the whole answer with "
                         "it, including whatever had already reached the client's receive buffer, and the server "
                         "had believed every byte of it sent. No end of stream, no data, and no TIME_WAIT to absorb "
                         "late segments of this connection."},
                        {ECONNRESET, Situation::all_delivered,
                         "The client's read failed with ECONNRESET: the reset reached it instead of an end of "
                         "stream. This time every byte had reached the client before the reset, so only the error "
                         "tells it that the server did not close normally."},
                        {kOk, Situation::any,
                         "The client read to a clean end of stream: the server's close did not send a reset here, "
                         "so on this kernel SO_LINGER {1, 0} did not abort the connection."},
                        {std::nullopt, Situation::any,
                         "The client's reading ended with this error; the facts above say how many bytes arrived "
                         "of those the server had queued."},
                    },
                .run = linger_abort_peer_read,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::lab::run(PORTREUSE_EXPERIMENT, kExperiment, argc, argv);
}
