#include "portreuse/net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

namespace portreuse {
namespace {

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// poll() that survives EINTR and keeps the original deadline.
std::error_code poll_until(int fd, short events, Millis deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    pollfd watched{fd, events, 0};
    const int ready = ::poll(&watched, 1, remaining_ms(until));
    if (ready > 0) return {};
    if (ready == 0) return make_error(ETIMEDOUT);
    if (errno != EINTR) return last_error();
  }
}

}  // namespace

Endpoint Endpoint::from_sockaddr(const sockaddr* address, socklen_t length) {
  Endpoint endpoint;
  const auto copied = std::min<socklen_t>(length, sizeof(endpoint.storage_));
  std::memcpy(&endpoint.storage_, address, copied);
  endpoint.length_ = copied;
  return endpoint;
}

std::optional<Endpoint> Endpoint::parse(std::string_view address, std::uint16_t port) {
  std::string text(address);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  Endpoint endpoint;
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&endpoint.storage_, &v4, sizeof v4);
    endpoint.length_ = sizeof v4;
    return endpoint;
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&endpoint.storage_, &v6, sizeof v6);
    endpoint.length_ = sizeof v6;
    return endpoint;
  }
  return std::nullopt;
}

std::optional<Endpoint> Endpoint::parse_with_port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) return std::nullopt;
  const auto host = text.substr(0, colon);
  const auto port_text = text.substr(colon + 1);
  if (host.find(':') != std::string_view::npos && host.front() != '[') return std::nullopt;
  unsigned long port = 0;
  for (const char digit : port_text) {
    if (digit < '0' || digit > '9' || port > 65535) return std::nullopt;
    port = port * 10 + static_cast<unsigned long>(digit - '0');
  }
  if (port > 65535) return std::nullopt;
  return parse(host, static_cast<std::uint16_t>(port));
}

std::uint16_t Endpoint::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

Endpoint Endpoint::with_port(std::uint16_t port) const {
  Endpoint copy = *this;
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&copy.storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&copy.storage_)->sin6_port = htons(port);
  return copy;
}

std::string Endpoint::address_text() const {
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buffer.data(), buffer.size());
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buffer.data(), buffer.size());
  } else {
    return "?";
  }
  return buffer.data();
}

std::string Endpoint::text() const {
  const auto port_text = std::to_string(port());
  if (family() == AF_INET6) return "[" + address_text() + "]:" + port_text;
  return address_text() + ":" + port_text;
}

bool Endpoint::is_wildcard() const noexcept {
  if (family() == AF_INET) return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == INADDR_ANY;
  if (family() == AF_INET6) {
    const auto& address = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&address);
  }
  return false;
}

bool Endpoint::is_loopback() const noexcept {
  if (family() == AF_INET) {
    const auto host = ntohl(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr);
    return (host >> 24U) == 127U;
  }
  if (family() == AF_INET6) {
    const auto& address = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&address)) return true;
    return IN6_IS_ADDR_V4MAPPED(&address) && address.s6_addr[12] == 127;
  }
  return false;
}

std::string SocketOptions::describe() const {
  std::string text;
  const auto add = [&text](const std::string& part) { text += (text.empty() ? "" : ", ") + part; };
  if (reuse_address) add("SO_REUSEADDR=" + std::to_string(*reuse_address));
  if (reuse_port) add("SO_REUSEPORT=" + std::to_string(*reuse_port));
  if (ipv6_only) add("IPV6_V6ONLY=" + std::to_string(*ipv6_only));
  if (abortive_close) add("SO_LINGER={1,0}");
  return text.empty() ? "no options" : text;
}

Result<UniqueFd> open_socket(int family, Transport transport) {
  const int type = transport == Transport::tcp ? SOCK_STREAM : SOCK_DGRAM;
  const int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return last_error();
  return UniqueFd(fd);
}

std::error_code set_int_option(int fd, int level, int name, int value) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) return last_error();
  return {};
}

std::error_code apply_options(int fd, const SocketOptions& options) {
  if (options.reuse_address) {
    if (auto error = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, *options.reuse_address)) return error;
  }
  if (options.reuse_port) {
#ifdef SO_REUSEPORT
    if (auto error = set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, *options.reuse_port)) return error;
#else
    return make_error(ENOPROTOOPT);
#endif
  }
  if (options.ipv6_only) {
    if (auto error = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, *options.ipv6_only)) return error;
  }
  if (options.abortive_close) {
    const linger abort_on_close{1, 0};
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) != 0) return last_error();
  }
  return {};
}

std::error_code bind_to(int fd, const Endpoint& where) {
  if (::bind(fd, where.raw(), where.raw_length()) != 0) return last_error();
  return {};
}

std::error_code listen_on(int fd, int backlog) {
  if (::listen(fd, backlog) != 0) return last_error();
  return {};
}

Result<Endpoint> local_endpoint(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return last_error();
  return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

Result<Endpoint> peer_endpoint(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return last_error();
  return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

std::error_code connect_within(int fd, const Endpoint& server, Millis deadline) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return last_error();
  std::error_code outcome;
  if (::connect(fd, server.raw(), server.raw_length()) != 0) {
    outcome = last_error();
    if (outcome.value() == EINPROGRESS) {
      outcome = poll_until(fd, POLLOUT, deadline);
      if (!outcome) {
        int pending = 0;
        socklen_t length = sizeof pending;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &length);
        outcome = pending != 0 ? make_error(pending) : std::error_code{};
      }
    }
  }
  ::fcntl(fd, F_SETFL, flags);
  return outcome;
}

Result<Connection> accept_within(int listener, Millis deadline) {
  if (auto error = poll_until(listener, POLLIN, deadline)) return error;
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&storage), &length, SOCK_CLOEXEC);
  if (fd < 0) return last_error();
  return Connection{UniqueFd(fd), Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), length)};
}

std::optional<std::string> ipv6_unavailable() {
  auto probe = open_socket(AF_INET6);
  if (!probe) return "this system has no IPv6 sockets (socket(AF_INET6): " + describe_outcome(probe.error()) + ")";
  if (auto error = bind_to(probe->get(), *Endpoint::parse("::1", 0))) {
    return "::1 cannot be bound (" + describe_outcome(error) + "): IPv6 is off on the loopback interface";
  }
  return std::nullopt;
}

Result<Arrival> accept_on_any(const std::vector<int>& listeners, Millis deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::vector<pollfd> watched;
  watched.reserve(listeners.size());
  for (const int fd : listeners) watched.push_back(pollfd{fd, POLLIN, 0});
  for (;;) {
    const int ready = ::poll(watched.data(), watched.size(), remaining_ms(until));
    if (ready == 0) return make_error(ETIMEDOUT);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    for (std::size_t index = 0; index < watched.size(); ++index) {
      if ((watched[index].revents & POLLIN) == 0) continue;
      auto accepted = accept_within(listeners[index], Millis(0));
      if (!accepted) return accepted.error();
      return Arrival{index, std::move(accepted.value())};
    }
  }
}

std::error_code wait_readable(int fd, Millis deadline) {
  return poll_until(fd, POLLIN, deadline);
}

Result<std::string> receive_within(int fd, Millis deadline) {
  if (auto error = poll_until(fd, POLLIN, deadline)) return error;
  std::array<char, 4096> buffer{};
  for (;;) {
    const auto got = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (got >= 0) return std::string(buffer.data(), static_cast<std::size_t>(got));
    if (errno != EINTR) return last_error();
  }
}

std::error_code wait_for_end_of_stream(int fd, Millis deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    auto chunk = receive_within(fd, Millis(remaining_ms(until)));
    if (!chunk) return chunk.error();
    if (chunk->empty()) return {};
  }
}

std::error_code send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return {};
}

}  // namespace portreuse
