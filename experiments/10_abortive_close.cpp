// 10-abortive-close: SO_LINGER {1, 0}, closing with a reset instead of a goodbye.
//
// Shows: a server that closes its connections with SO_LINGER {on, 0 s} leaves no TIME_WAIT, so it
// restarts at once; and the price: the peer gets a reset, and what the server had sent but the
// network had not yet delivered is thrown away.
//
// Beyond the articles: the shortcut often offered instead of SO_REUSEADDR (socket(7), SO_LINGER).
// Lesson: lessons/10-abortive-close.md
//
// Usage: 10-abortive-close [--port P] [--json] [--no-color] [--step]
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <string>

#include "portreuse/experiment.hpp"
#include "portreuse/json.hpp"
#include "portreuse/scenarios.hpp"

namespace {

using namespace portreuse;

// A bound on the bulk answer, in case a kernel buffered without limit.
constexpr std::size_t kMaxAnswer = 64U << 20U;

Observation restart_after_linger_abort(StepContext& context) {
  RestartPlan plan;
  plan.old_options.abortive_close = true;  // the old server resets each connection when it closes it
  plan.stop_signal = SIGINT;
  return restart_server(context, plan);
}

// Queues as much of a long answer as the kernel takes without blocking, the way a server believes
// it has "sent" a file: send() returned, so the bytes are gone from the program.
std::size_t queue_long_answer(int fd) {
  const std::string block(std::size_t{64} * 1024, 'x');
  std::size_t queued = 0;
  while (queued < kMaxAnswer) {
    const auto sent = ::send(fd, block.data(), block.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) break;  // EAGAIN: both the client's and the server's buffers are full
    queued += static_cast<std::size_t>(sent);
  }
  return queued;
}

struct ClientReads {
  std::size_t bytes = 0;
  std::error_code ended_by;  // the read that ended the stream: an error, or ok for end of stream
  std::string next;          // what one more read returned after that
};

ClientReads read_until_the_end(int fd) {
  ClientReads reads;
  for (;;) {
    auto chunk = receive_within(fd);
    if (!chunk) {
      reads.ended_by = chunk.error();
      break;
    }
    if (chunk->empty()) break;
    reads.bytes += chunk->size();
  }
  auto after = receive_within(fd, Millis(200));
  reads.next = !after ? outcome_name(after.error()) : after->empty() ? "end of stream" : "more data";
  return reads;
}

// The server answers a request with a long reply and closes with SO_LINGER {1, 0} at once.
Observation linger_abort_peer_read(StepContext& context) {
  const auto& narrator = context.narrator();
  const auto address = context.loopback(context.port());
  auto listener = attempt_listen(context, "server", address, {});
  if (listener.deciding_outcome()) return Observation::failed_setup("the server could not listen on " + address.text());
  auto client = open_socket(AF_INET);
  if (!client) return Observation::failed_setup("socket: " + describe_outcome(client.error()));
  const auto connected = connect_within(client->get(), address);
  narrator.call("client", "connect " + address.text(), connected);
  if (connected) return Observation::failed_setup("the client could not connect: " + describe_outcome(connected));
  auto accepted = accept_within(listener.socket.get());
  if (!accepted) return Observation::failed_setup("accept: " + describe_outcome(accepted.error()));
  narrator.call("server", "accept from " + accepted->peer.text(), {});
  const std::string request = "send me the file";
  narrator.line("client", "sends \"" + request + "\", then does not read for a moment");
  if (auto error = send_all(client->get(), request))
    return Observation::failed_setup("send: " + describe_outcome(error));
  auto received = receive_within(accepted->fd.get());
  if (!received || received->empty()) return Observation::failed_setup("the server did not get the request");
  narrator.line("server", "received \"" + *received + "\"");

  const auto queued = queue_long_answer(accepted->fd.get());
  narrator.line("server",
                "send() took " + std::to_string(queued) + " bytes of the answer: the program thinks they are sent");
  const SocketOptions abortive{.abortive_close = true};
  if (auto error = apply_options(accepted->fd.get(), abortive)) {
    return Observation::failed_setup("setsockopt SO_LINGER: " + describe_outcome(error));
  }
  narrator.call("server", "setsockopt " + abortive.describe(), {});
  accepted->fd.reset();
  narrator.line("server", "close() with a zero linger time, before the client has read anything");

  const auto reads = read_until_the_end(client->get());
  narrator.line("client", "now reads: got " + std::to_string(reads.bytes) + " bytes, then " +
                              (reads.ended_by ? describe_outcome(reads.ended_by) : std::string("end of stream")));
  narrator.line("client", "one more read: " + reads.next);
  if (reads.bytes < queued) {
    narrator.line("kernel", std::to_string(queued - reads.bytes) +
                                " bytes that send() had taken never reached the client: discarded with the connection");
  }
  listener.socket.reset();
  context.let_closing_settle(context.port());
  const auto holders =
      context.show_sockets(context.port(), "the kernel's sockets for the port, once the server stopped listening:");
  client->reset();

  Observation observation;
  observation.call = "recv";
  observation.outcome = reads.ended_by;
  observation.situation = reads.bytes == 0       ? "nothing-delivered"
                          : reads.bytes < queued ? "partly-delivered"
                                                 : "all-delivered";
  observation.facts.emplace_back("bytes_sent_by_server", std::to_string(queued));
  observation.facts.emplace_back("bytes_read_by_client", std::to_string(reads.bytes));
  observation.facts.emplace_back("bytes_lost", std::to_string(queued - std::min(queued, reads.bytes)));
  observation.facts.emplace_back("read_after_error", json_quote(reads.next));
  observation.facts.emplace_back("sockets_after_reset", holders ? sockets_json(*holders) : "null");
  return observation;
}

const Experiment kExperiment{
    .number = "10",
    .slug = "abortive-close",
    .title = "SO_LINGER 0: closing with a reset",
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
                .claimed = "ok",
                .expected_linux = "ok",
                .elsewhere = "",
                .explanations =
                    {
                        {"ok", "clean",
                         "With a zero linger time, close() does not start the FIN exchange: the kernel sends a reset "
                         "(RST) and destroys the connection on the spot. A connection that ends with a reset never "
                         "enters TIME_WAIT, so nothing of it stayed bound to the port (the table above is empty) and "
                         "the new server bound at once. The client's wait for the end of the stream, above, shows how "
                         "the reset looked from its "
                         "side. Compare experiment 02, where a normal close left a TIME_WAIT."},
                        {"ok", "",
                         "The new server bound at once; the socket table above shows what was left on the port."},
                        {"EADDRINUSE", "time-wait",
                         "A TIME_WAIT socket held the port although the server closed with SO_LINGER {1, 0}: on this "
                         "kernel a zero linger time did not turn the close into a reset."},
                        {"EADDRINUSE", "",
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
                .claimed = "ok",
                .expected_linux = "ECONNRESET",
                .elsewhere = "",
                .explanations =
                    {
                        {"ECONNRESET", "partly-delivered",
                         "The reset ended the connection at once on both sides. The client could still read what "
                         "had already arrived in its own receive buffer (Linux keeps that), then its read failed "
                         "with ECONNRESET instead of a clean end of stream. Everything still waiting in the "
                         "server's send buffer was thrown away with the connection: the bytes that never reached "
                         "the client (counted above) had been accepted by send(), so the server believed them sent. A "
                         "reset also ends TIME_WAIT's "
                         "protection: there is no waiting period to absorb late segments of this connection."},
                        {"ECONNRESET", "nothing-delivered",
                         "The client's very first read failed with ECONNRESET: the reset took the whole answer with "
                         "it, including whatever had already reached the client's receive buffer, and the server "
                         "had believed every byte of it sent. No end of stream, no data, and no TIME_WAIT to absorb "
                         "late segments of this connection."},
                        {"ECONNRESET", "all-delivered",
                         "The client's read failed with ECONNRESET: the reset reached it instead of an end of "
                         "stream. This time every byte had reached the client before the reset, so only the error "
                         "tells it that the server did not close normally."},
                        {"ok", "",
                         "The client read to a clean end of stream: the server's close did not send a reset here, "
                         "so on this kernel SO_LINGER {1, 0} did not abort the connection."},
                        {"*", "",
                         "The client's reading ended with this error; the facts above say how many bytes arrived "
                         "of those the server had queued."},
                    },
                .run = linger_abort_peer_read,
            },
        },
};

}  // namespace

int main(int argc, char** argv) {
  return portreuse::run_experiment(kExperiment, argc, argv);
}
