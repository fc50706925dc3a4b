#include "portreuse/traffic.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace portreuse {
namespace {

using Clock = std::chrono::steady_clock;

// Accepts what arrives within the deadline (0: only what is queued already), counting per listener.
void accept_arrivals(const std::vector<int>& listeners, Millis deadline, AcceptTally& tally,
                     std::vector<UniqueFd>& accepted) {
  while (auto arrival = accept_on_any(listeners, deadline)) {
    if (!tally.first_peer[arrival->listener]) tally.first_peer[arrival->listener] = arrival->connection.peer;
    ++tally.accepted[arrival->listener];
    accepted.push_back(std::move(arrival->connection.fd));
    if (tally.total_accepted() >= tally.connected) return;
  }
}

}  // namespace

int AcceptTally::total_accepted() const {
  int total = 0;
  for (const int count : accepted) total += count;
  return total;
}

AcceptTally tally_accepts(const std::vector<int>& listeners, const Endpoint& target, int clients, Millis deadline) {
  AcceptTally tally;
  tally.accepted.assign(listeners.size(), 0);
  tally.first_peer.assign(listeners.size(), std::nullopt);
  const auto until = Clock::now() + deadline;
  const auto left = [&until] {
    const auto remaining = std::chrono::duration_cast<Millis>(until - Clock::now());
    return remaining.count() > 0 ? remaining : Millis(0);
  };
  const SocketOptions reset_on_close{.abortive_close = true};
  std::vector<UniqueFd> client_sockets;
  std::vector<UniqueFd> accepted;
  for (int client = 0; client < clients; ++client) {
    auto socket = open_socket(target.family());
    if (!socket) {
      tally.failure = socket.error();
      break;
    }
    // A reset on close: hundreds of connections must not leave hundreds of TIME_WAITs.
    (void)apply_options(socket->get(), reset_on_close);
    if (auto error = connect_within(socket->get(), target, left())) {
      tally.failure = error;
      break;
    }
    ++tally.connected;
    client_sockets.push_back(std::move(socket.value()));
    accept_arrivals(listeners, Millis(0), tally, accepted);  // as it goes, so no backlog overflows
  }
  // The last handshakes may still be on their way into an accept queue.
  if (tally.total_accepted() < tally.connected) accept_arrivals(listeners, left(), tally, accepted);
  for (auto& connection : accepted) (void)apply_options(connection.get(), reset_on_close);
  client_sockets.clear();  // the clients reset first; the accepted ends then close quietly
  accepted.clear();
  return tally;
}

}  // namespace portreuse
