#include "portreuse/errors.hpp"

#include <array>
#include <cstring>

namespace portreuse {
namespace {

struct ErrnoEntry {
  int value;
  const char* name;
};

// Spelled out instead of strerrorname_np() so that the names are the same on every libc.
constexpr std::array kErrnoNames{
    ErrnoEntry{EPERM, "EPERM"},
    ErrnoEntry{ENOENT, "ENOENT"},
    ErrnoEntry{ESRCH, "ESRCH"},
    ErrnoEntry{EINTR, "EINTR"},
    ErrnoEntry{EIO, "EIO"},
    ErrnoEntry{EBADF, "EBADF"},
    ErrnoEntry{ECHILD, "ECHILD"},
    ErrnoEntry{EAGAIN, "EAGAIN"},
    ErrnoEntry{ENOMEM, "ENOMEM"},
    ErrnoEntry{EACCES, "EACCES"},
    ErrnoEntry{EFAULT, "EFAULT"},
    ErrnoEntry{EBUSY, "EBUSY"},
    ErrnoEntry{EEXIST, "EEXIST"},
    ErrnoEntry{EINVAL, "EINVAL"},
    ErrnoEntry{ENFILE, "ENFILE"},
    ErrnoEntry{EMFILE, "EMFILE"},
    ErrnoEntry{EPIPE, "EPIPE"},
    ErrnoEntry{ENOSPC, "ENOSPC"},
    ErrnoEntry{ENOSYS, "ENOSYS"},
    ErrnoEntry{EUSERS, "EUSERS"},
    ErrnoEntry{ENOTSOCK, "ENOTSOCK"},
    ErrnoEntry{EDESTADDRREQ, "EDESTADDRREQ"},
    ErrnoEntry{EMSGSIZE, "EMSGSIZE"},
    ErrnoEntry{EPROTOTYPE, "EPROTOTYPE"},
    ErrnoEntry{ENOPROTOOPT, "ENOPROTOOPT"},
    ErrnoEntry{EPROTONOSUPPORT, "EPROTONOSUPPORT"},
    ErrnoEntry{EOPNOTSUPP, "EOPNOTSUPP"},
    ErrnoEntry{EAFNOSUPPORT, "EAFNOSUPPORT"},
    ErrnoEntry{EADDRINUSE, "EADDRINUSE"},
    ErrnoEntry{EADDRNOTAVAIL, "EADDRNOTAVAIL"},
    ErrnoEntry{ENETDOWN, "ENETDOWN"},
    ErrnoEntry{ENETUNREACH, "ENETUNREACH"},
    ErrnoEntry{ECONNABORTED, "ECONNABORTED"},
    ErrnoEntry{ECONNRESET, "ECONNRESET"},
    ErrnoEntry{ENOBUFS, "ENOBUFS"},
    ErrnoEntry{EISCONN, "EISCONN"},
    ErrnoEntry{ENOTCONN, "ENOTCONN"},
    ErrnoEntry{ETIMEDOUT, "ETIMEDOUT"},
    ErrnoEntry{ECONNREFUSED, "ECONNREFUSED"},
    ErrnoEntry{EHOSTUNREACH, "EHOSTUNREACH"},
    ErrnoEntry{EALREADY, "EALREADY"},
    ErrnoEntry{EINPROGRESS, "EINPROGRESS"},
};

}  // namespace

std::string errno_name(int errno_value) {
  for (const auto& entry : kErrnoNames) {
    if (entry.value == errno_value) return entry.name;
  }
  return "errno " + std::to_string(errno_value);
}

std::string outcome_name(std::error_code outcome) {
  return outcome ? errno_name(outcome.value()) : std::string("ok");
}

std::string describe_outcome(std::error_code outcome) {
  if (!outcome) return "ok";
  return errno_name(outcome.value()) + " (" + std::strerror(outcome.value()) + ")";
}

std::optional<std::error_code> parse_outcome(std::string_view name) {
  if (name == "ok") return std::error_code{};
  for (const auto& entry : kErrnoNames) {
    if (name == entry.name) return make_error(entry.value);
  }
  return std::nullopt;
}

}  // namespace portreuse
