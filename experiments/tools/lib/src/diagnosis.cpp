#include "portreuse/diagnosis.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

#include "portreuse/ports.hpp"

namespace portreuse {
namespace {

// What is bound to the port: "listener", "connection", "time-wait" or "clean".
std::string classify_holders(const std::vector<SocketEntry>& bound) {
  bool time_wait = false;
  bool connection = false;
  for (const auto& entry : bound) {
    if (entry.is(TcpState::listen)) return "listener";
    if (entry.is(TcpState::time_wait)) {
      time_wait = true;
    } else {
      connection = true;
    }
  }
  if (connection) return "connection";
  return time_wait ? "time-wait" : "clean";
}

// "::ffff:127.0.0.1" is the IPv4 address 127.0.0.1 seen through an IPv6 socket.
std::string plain_address(const Endpoint& endpoint) {
  std::string text = endpoint.address_text();
  constexpr std::string_view kMapped = "::ffff:";
  if (endpoint.family() == AF_INET6 && text.rfind(kMapped, 0) == 0 && text.find('.') != std::string::npos) {
    return text.substr(kMapped.size());
  }
  return text;
}

// One decimal, as the table row printed above the reason: one message, one rounding.
std::string whole_seconds(double seconds) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f s", seconds);
  return text.data();
}

std::string owner_text(const SocketOwner& owner) {
  return "pid " + std::to_string(owner.pid) + " (" + owner.command + ")";
}

const PortHolder* first_in_state(const std::vector<const PortHolder*>& holders, bool (*wanted)(const SocketEntry&)) {
  for (const auto* holder : holders) {
    if (wanted(holder->socket)) return holder;
  }
  return nullptr;
}

bool is_listener(const SocketEntry& entry) {
  return entry.is(TcpState::listen);
}
bool is_connection(const SocketEntry& entry) {
  return !entry.is(TcpState::listen) && !entry.is(TcpState::time_wait);
}

std::string listener_reason(const PortHolder& listener, const Endpoint& attempted) {
  std::string text = "A live socket is listening on " + listener.socket.local.text();
  text += listener.socket.local.text() == attempted.text() ? " already: " : ", which covers " + attempted.text() + ": ";
  text += listener.owner ? owner_text(*listener.owner) + "."
                         : "its process is not visible from here (another user's "
                           "process, or one that ended a moment ago).";
  text +=
      " Linux gives a listening address to one socket only, unless both sockets set SO_REUSEPORT (and belong to "
      "the same user); SO_REUSEADDR does not change that. Stop that server first";
  if (listener.owner) text += " (Ctrl+C in its terminal, or kill " + std::to_string(listener.owner->pid) + ")";
  return text + ", or use another port.";
}

std::string connection_reason(const PortHolder& connection, const SocketOptions& options) {
  std::string text = "Nothing listens on the port any more, but a connection on it is still " +
                     connection.socket.state_name() + " (" + connection.socket.local.text() + " <-> " +
                     connection.socket.remote.text() + ")";
  if (connection.owner) {
    text += ", held open by " + owner_text(*connection.owner) +
            ". A process that serves an accepted connection (a child the old server forked, for example) keeps "
            "the port bound after the listener is gone.";
  } else {
    text += ", with no process left: the kernel is finishing the close on its own.";
  }
  if (options.reuse_address.value_or(0) != 0) {
    text +=
        " This socket set SO_REUSEADDR, but on Linux the option must be set on both sockets, and that connection "
        "came from a listener without it.";
  } else {
    text += " With SO_REUSEADDR on the old listener and on the new socket, Linux would let bind() pass.";
  }
  if (connection.owner) text += " Or end that connection (kill " + std::to_string(connection.owner->pid) + ").";
  return text;
}

std::string time_wait_reason(double seconds_left, const SocketOptions& options) {
  const std::string left = whole_seconds(seconds_left);
  std::string text =
      "An earlier connection on this port ended, and the side that owned the port closed first, so the kernel "
      "keeps that connection in TIME_WAIT, still bound to the port, for 2 MSL (" +
      left + " left). No process holds it: stopping programs does not help.";
  if (options.reuse_address.value_or(0) != 0) {
    text +=
        " This socket did set SO_REUSEADDR. On Linux a TIME_WAIT socket keeps the SO_REUSEADDR value of the socket "
        "it came from, and bind() passes only when both have it: the earlier server did not set it. Wait " +
        left + " (or use another port); from then on, start every run with SO_REUSEADDR.";
  } else {
    text += " Without SO_REUSEADDR, Linux refuses the bind until TIME_WAIT ends: wait " + left +
            ", or set SO_REUSEADDR (on Linux, on the old and on the new socket).";
  }
  return text;
}

}  // namespace

bool addresses_overlap(const Endpoint& attempted, const Endpoint& bound) {
  if (attempted.is_wildcard() || bound.is_wildcard()) return true;
  return plain_address(attempted) == plain_address(bound);
}

BindDiagnosis diagnose_bind_failure(const Endpoint& attempted, const SocketOptions& options, std::error_code outcome) {
  BindDiagnosis diagnosis;
  const auto port = attempted.port();
  auto table = read_socket_table();
  if (table) {
    for (const auto& entry : bound_to_port(*table, port)) {
      diagnosis.holders.push_back({entry, find_socket_owner(entry.inode)});
      if (entry.is(TcpState::time_wait)) {
        diagnosis.time_wait_seconds_left = std::max(diagnosis.time_wait_seconds_left, entry.timer_seconds);
      }
    }
    std::vector<SocketEntry> sockets;
    for (const auto& holder : diagnosis.holders) sockets.push_back(holder.socket);
    diagnosis.sockets = describe_holders(sockets);
  }

  if (outcome.value() == EADDRNOTAVAIL) {
    diagnosis.situation = "address-not-local";
    diagnosis.reason = "No network interface of this machine has the address " + attempted.address_text() +
                       ": a socket can only bind an address the machine owns (see `ip address`), or the wildcard.";
    return diagnosis;
  }
  if (outcome.value() == EACCES) {
    diagnosis.situation = "privileged-port";
    diagnosis.reason = "Port " + std::to_string(port) +
                       " is below net.ipv4.ip_unprivileged_port_start (usually 1024): binding it needs root or "
                       "CAP_NET_BIND_SERVICE. Pick a port of 1024 or more.";
    return diagnosis;
  }
  if (!table) {
    diagnosis.situation = "unreadable";
    diagnosis.reason = "The socket table could not be read (" + describe_outcome(table.error()) +
                       "), so what holds the port cannot be shown here.";
    return diagnosis;
  }

  std::vector<const PortHolder*> relevant;
  for (const auto& holder : diagnosis.holders) {
    if (addresses_overlap(attempted, holder.socket.local)) relevant.push_back(&holder);
  }
  std::vector<SocketEntry> relevant_sockets;
  for (const auto* holder : relevant) relevant_sockets.push_back(holder->socket);
  diagnosis.situation = classify_holders(relevant_sockets);

  if (const auto* listener = first_in_state(relevant, is_listener)) {
    diagnosis.reason = listener_reason(*listener, attempted);
  } else if (const auto* connection = first_in_state(relevant, is_connection)) {
    diagnosis.reason = connection_reason(*connection, options);
  } else if (diagnosis.situation == "time-wait") {
    diagnosis.reason = time_wait_reason(diagnosis.time_wait_seconds_left, options);
  } else {
    diagnosis.reason = "The socket table shows nothing on port " + std::to_string(port) + " that overlaps " +
                       attempted.text() +
                       " now: whatever held it has gone in the meantime (try again), or it lives in another "
                       "network namespace (a container).";
  }
  return diagnosis;
}

std::string explain_client_failure(std::string_view call, const Endpoint& server, std::error_code outcome) {
  switch (outcome.value()) {
    case ECONNREFUSED:
      return "Nothing listens on " + server.text() +
             ": the kernel answered the connection request with a reset. Is the server running, on this port "
             "and on an address that covers " +
             server.address_text() + "?";
    case ECONNRESET:
      return "The server reset the connection (RST) instead of closing it in order: it closed with unread data, "
             "or with SO_LINGER 0, or it ended abruptly.";
    case EPIPE: return "The server had already closed the connection, so there was no one to send to.";
    case ETIMEDOUT:
      return "No answer in time: the server did not " +
             std::string(call == "connect" ? "accept the connection" : "reply") + ". Is it busy with another client?";
    case EADDRNOTAVAIL:
      if (call == "connect") {
        return "The kernel could not use that local address and port for this connection: a connection with the "
               "same local and remote address and port already exists (perhaps in TIME_WAIT), or no local port "
               "is free.";
      }
      return "No network interface of this machine has that address: a socket can only bind an address the "
             "machine owns, or the wildcard.";
    case ENETUNREACH:
    case EHOSTUNREACH: return "There is no route to " + server.address_text() + " from this machine.";
    case EAFNOSUPPORT: return "This system does not support that address family (IPv6 may be off).";
    default: return std::string(call) + " failed: " + describe_outcome(outcome) + ".";
  }
}

}  // namespace portreuse
