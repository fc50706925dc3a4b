#include "portreuse/traffic.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace portreuse {
namespace {

using Clock = std::chrono::steady_clock;

// Accepts whatever is already queued on each listener, without waiting.
void accept_queued(const std::vector<int>& listeners, AcceptTally& tally, std::vector<UniqueFd>& accepted) {
  for (std::size_t index = 0; index < listeners.size(); ++index) {
    while (auto connection = accept_within(listeners[index], Millis(0))) {
      if (!tally.first_peer[index]) tally.first_peer[index] = connection->peer;
      ++tally.accepted[index];
      accepted.push_back(std::move(connection->fd));
    }
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
    accept_queued(listeners, tally, accepted);
  }
  // The last handshakes may still be on their way into an accept queue.
  while (tally.total_accepted() < tally.connected && left().count() > 0) {
    std::vector<pollfd> watched;
    for (const int listener : listeners) watched.push_back({listener, POLLIN, 0});
    if (::poll(watched.data(), watched.size(), static_cast<int>(std::min<long long>(left().count(), 50))) < 0 &&
        errno != EINTR) {
      break;
    }
    accept_queued(listeners, tally, accepted);
  }
  for (auto& connection : accepted) (void)apply_options(connection.get(), reset_on_close);
  client_sockets.clear();  // the clients reset first; the accepted ends then close quietly
  accepted.clear();
  return tally;
}

}  // namespace portreuse
