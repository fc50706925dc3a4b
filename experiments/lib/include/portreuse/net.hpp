// Endpoints and the socket calls the lessons are about, each returning its outcome.
// Nothing here prints or exits: the experiment decides what an outcome means.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "portreuse/errors.hpp"
#include "portreuse/fd.hpp"

namespace portreuse {

using Millis = std::chrono::milliseconds;

// Every blocking call in the suite waits at most this long unless told otherwise.
inline constexpr Millis kDefaultDeadline{3000};

class Endpoint {
 public:
  Endpoint() = default;
  static Endpoint from_sockaddr(const sockaddr* address, socklen_t length);

  // "0.0.0.0", "127.0.0.1", "::", "::1", "[::1]", "::ffff:127.0.0.1"; nullopt when not an IP address.
  static std::optional<Endpoint> parse(std::string_view address, std::uint16_t port);
  // "127.0.0.1:40123" or "[::1]:40123"; nullopt when malformed.
  static std::optional<Endpoint> parse_with_port(std::string_view text);

  [[nodiscard]] int family() const noexcept { return storage_.ss_family; }
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] Endpoint with_port(std::uint16_t port) const;
  [[nodiscard]] std::string address_text() const;  // "127.0.0.1", "::1"
  [[nodiscard]] std::string text() const;          // "127.0.0.1:40123", "[::1]:40123"
  [[nodiscard]] bool is_wildcard() const noexcept;
  [[nodiscard]] bool is_loopback() const noexcept;  // 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104

  [[nodiscard]] const sockaddr* raw() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  [[nodiscard]] socklen_t raw_length() const noexcept { return length_; }

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

// Options a socket gets before bind(). An unset option is left at the kernel's default,
// which is different from setting it to 0: that difference is one of the lessons.
struct SocketOptions {
  std::optional<int> reuse_address;  // SO_REUSEADDR
  std::optional<int> reuse_port;     // SO_REUSEPORT (not the same option; see lessons)
  std::optional<int> ipv6_only;      // IPV6_V6ONLY
  bool abortive_close = false;       // SO_LINGER {on, 0 s}: close() sends RST

  [[nodiscard]] std::string describe() const;  // "SO_REUSEADDR=1", "no options"
};

enum class Transport { tcp, udp };

Result<UniqueFd> open_socket(int family, Transport transport = Transport::tcp);
std::error_code apply_options(int fd, const SocketOptions& options);
std::error_code set_int_option(int fd, int level, int name, int value);
std::error_code bind_to(int fd, const Endpoint& where);
std::error_code listen_on(int fd, int backlog = 64);
Result<Endpoint> local_endpoint(int fd);
Result<Endpoint> peer_endpoint(int fd);

struct Connection {
  UniqueFd fd;
  Endpoint peer;
};

// Which of several listeners a connection was queued on, and the accepted connection.
struct Arrival {
  std::size_t listener = 0;  // index into the listeners given
  Connection connection;
};

// Waits until one of the listeners has a connection queued, then accepts it from that one.
// ETIMEDOUT when none came within the deadline (0: only what is queued already).
Result<Arrival> accept_on_any(const std::vector<int>& listeners, Millis deadline = kDefaultDeadline);

// connect() that gives up after the deadline with ETIMEDOUT.
std::error_code connect_within(int fd, const Endpoint& server, Millis deadline = kDefaultDeadline);
Result<Connection> accept_within(int listener, Millis deadline = kDefaultDeadline);
// Some bytes, or "" at end of stream; ETIMEDOUT when nothing came in time.
Result<std::string> receive_within(int fd, Millis deadline = kDefaultDeadline);
// Reads until end of stream (the peer closed); ETIMEDOUT if it did not.
std::error_code wait_for_end_of_stream(int fd, Millis deadline = kDefaultDeadline);
// Never raises SIGPIPE: a broken connection shows up as EPIPE.
std::error_code send_all(int fd, std::string_view data);

// Why IPv6 steps cannot run here (no AF_INET6 sockets, or ::1 cannot be bound), or nullopt.
std::optional<std::string> ipv6_unavailable();

// Waits until fd is readable; ETIMEDOUT otherwise.
std::error_code wait_readable(int fd, Millis deadline);

}  // namespace portreuse
