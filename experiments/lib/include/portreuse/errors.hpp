// Outcomes of system calls as std::error_code, named the way man pages name them.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace portreuse {

// The error of the call that just failed; read errno before anything else can change it.
inline std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

inline std::error_code make_error(int errno_value) noexcept {
  return {errno_value, std::system_category()};
}

// "EADDRINUSE" for EADDRINUSE; "errno 4242" for a value this system has no name for.
std::string errno_name(int errno_value);

// "ok" for success, otherwise the errno name: the word every step reports as its outcome.
std::string outcome_name(std::error_code outcome);

// "EADDRINUSE (Address already in use)", or "ok".
std::string describe_outcome(std::error_code outcome);

// The inverse of outcome_name: "ok" -> success, "EADDRINUSE" -> that error; nullopt if unknown.
std::optional<std::error_code> parse_outcome(std::string_view name);

// A value or the error that prevented it. Small stand-in for C++23 std::expected.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}     // NOLINT(google-explicit-constructor)
  Result(std::error_code error) : error_(error) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] std::error_code error() const noexcept { return error_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  std::error_code error_;
};

}  // namespace portreuse
