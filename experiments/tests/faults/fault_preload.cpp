// fault_preload: makes one chosen libc call fail with a chosen errno, for the fault-injection test
// (experiments/tests/fault_injection_test.cpp). Loaded with LD_PRELOAD into the program under
// test only, never into the test itself.
//
//   PORTREUSE_FAULT=CALL:ERRNO[:after=N][:in=child][:skip-port-0]
//     CALL         socket bind listen connect accept (also accept4; waits up to 3 s for a
//                  connection first, as the kernel fails it) fork pipe2 (also pipe)
//                  setsockopt getsockname send recv sendto recvfrom shutdown kill
//     ERRNO        a name (EMFILE, ECONNREFUSED, EROFS...) or a number (200: one no table names)
//     after=N      the first N calls go through; every later one fails. Default 0: all fail.
//     in=child     only calls made in processes the program forked (the lab's server
//                  processes), never in the program's own process
//     skip-port-0  bind() and connect() to port 0 go through: the suite's plumbing asks the
//                  kernel for a free port that way (and its loopback check binds 127.0.0.1:0)
//   PORTREUSE_FAULT_LOG=FILE   (optional) one line "pid call errno" per injected failure
//
// Only the calls that pass the filters (in=child, skip-port-0) are counted for after=N. They are
// counted across the whole process tree of the program: one counter in a shared
// anonymous mapping, made when the library is loaded and inherited by every fork(). A scenario's
// calls are spread over processes (the server child accepts, the parent connects), so "connect
// fails after the first" means the program's second connect(), whichever process makes it; with a
// counter per process every child would start from a copy of its parent's count and a fault with
// after=N could strike in several processes at once, or in none, depending on when each forked.
// A program that exec()s starts a new count (the mapping does not survive exec).
//
// A spec it cannot read stops the program at once (exit status 125): a fault test whose fault
// was never armed would pass without testing anything.
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

struct Fault {
  char call[16] = {};
  int error = 0;
  long after = 0;
  bool in_child = false;
  bool skip_port_0 = false;
  pid_t loader = 0;  // the process that loaded the library: the program itself
  bool armed = false;
  std::atomic<long>* count = nullptr;  // in shared memory: the calls of CALL so far, tree-wide
};

Fault fault;

[[noreturn]] void refuse(const char* why, const char* spec) {
  std::fprintf(stderr,
               "fault_preload: %s in PORTREUSE_FAULT='%s'\n"
               "  want CALL:ERRNO[:after=N][:in=child][:skip-port-0]; see fault_preload.cpp\n",
               why, spec);
  std::fflush(stderr);
  _exit(125);
}

// EMFILE -> 24, "200" -> 200, anything else -> 0.
int parse_errno(const char* text, std::size_t length) {
  if (length == 0 || length >= 32) return 0;
  char name[32] = {};
  std::memcpy(name, text, length);
  if (name[0] >= '0' && name[0] <= '9') {
    char* end = nullptr;
    const long value = std::strtol(name, &end, 10);
    return *end == '\0' && value > 0 && value < 4096 ? static_cast<int>(value) : 0;
  }
  for (int value = 1; value < 4096; ++value) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char* known = ::strerrorname_np(value);
    if (known != nullptr && std::strcmp(known, name) == 0) return value;
#else
    (void)value;
#endif
  }
  return 0;
}

void arm(const char* spec) {
  const char* colon = std::strchr(spec, ':');
  if (colon == nullptr) refuse("no errno", spec);
  const auto call_length = static_cast<std::size_t>(colon - spec);
  if (call_length == 0 || call_length >= sizeof fault.call) refuse("no call name", spec);
  std::memcpy(fault.call, spec, call_length);
  static const char* const kCalls[] = {"socket", "bind",   "listen",     "connect",     "accept",
                                       "fork",   "pipe2",  "setsockopt", "getsockname", "send",
                                       "recv",   "sendto", "recvfrom",   "shutdown",    "kill"};
  bool known = false;
  for (const char* call : kCalls) known = known || std::strcmp(call, fault.call) == 0;
  if (!known) refuse("a call this library cannot fail", spec);
  const char* errno_text = colon + 1;
  const char* second = std::strchr(errno_text, ':');
  const auto errno_length = second != nullptr ? static_cast<std::size_t>(second - errno_text) : std::strlen(errno_text);
  fault.error = parse_errno(errno_text, errno_length);
  if (fault.error == 0) refuse("an errno it cannot read", spec);
  for (const char* option = second; option != nullptr; option = std::strchr(option + 1, ':')) {
    const char* text = option + 1;
    const char* next = std::strchr(text, ':');
    const auto length = next != nullptr ? static_cast<std::size_t>(next - text) : std::strlen(text);
    if (length == 8 && std::strncmp(text, "in=child", 8) == 0) {
      fault.in_child = true;
    } else if (length == 11 && std::strncmp(text, "skip-port-0", 11) == 0) {
      fault.skip_port_0 = true;
    } else if (length > 6 && std::strncmp(text, "after=", 6) == 0) {
      char* end = nullptr;
      fault.after = std::strtol(text + 6, &end, 10);
      if (end != text + length || fault.after < 0) refuse("a count it cannot read", spec);
    } else {
      refuse("an option it does not know", spec);
    }
  }
  fault.loader = ::getpid();
  void* shared = ::mmap(nullptr, sizeof(std::atomic<long>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) refuse("no shared memory for the count", spec);
  fault.count = new (shared) std::atomic<long>(0);
  fault.armed = true;
}

__attribute__((constructor)) void load() {
  if (const char* spec = std::getenv("PORTREUSE_FAULT"); spec != nullptr && *spec != '\0') arm(spec);
}

void log_injection(const char* call) {
  const char* path = std::getenv("PORTREUSE_FAULT_LOG");
  if (path == nullptr || *path == '\0') return;
  char line[96];
  const int length = std::snprintf(line, sizeof line, "%d %s %d\n", static_cast<int>(::getpid()), call, fault.error);
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!::write(fd, line, static_cast<std::size_t>(length));  // O_APPEND: one line, never interleaved
  ::close(fd);
}

bool port_0(const struct sockaddr* address, socklen_t length) {
  if (address == nullptr) return false;
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    return reinterpret_cast<const sockaddr_in*>(address)->sin_port == 0;
  }
  if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    return reinterpret_cast<const sockaddr_in6*>(address)->sin6_port == 0;
  }
  return false;
}

// True when this call of `call` is to fail: errno is then set and the caller returns -1.
bool strikes(const char* call, const struct sockaddr* address = nullptr, socklen_t length = 0) {
  if (!fault.armed || std::strcmp(call, fault.call) != 0) return false;
  if (fault.in_child && ::getpid() == fault.loader) return false;
  if (fault.skip_port_0 && port_0(address, length)) return false;
  const long before = fault.count->fetch_add(1);
  if (before < fault.after) return false;
  log_injection(call);
  errno = fault.error;
  return true;
}

template <typename Function>
Function real(const char* name) {
  void* found = ::dlsym(RTLD_NEXT, name);
  if (found == nullptr) {
    std::fprintf(stderr, "fault_preload: no next definition of %s\n", name);
    _exit(125);
  }
  return reinterpret_cast<Function>(found);
}

}  // namespace

// Each wrapper fails when the fault strikes, and otherwise calls the next definition (libc's).
#define PORTREUSE_FAULT_WRAP_WHERE(ret, name, params, args, where)       \
  extern "C" ret name params {                                           \
    using Real = ret(*) params; /* NOLINT(bugprone-macro-parentheses) */ \
    static Real next = real<Real>(#name);                                \
    if (strikes where) return static_cast<ret>(-1);                      \
    return next args;                                                    \
  }
#define PORTREUSE_FAULT_WRAP(ret, name, params, args, fault_name) \
  PORTREUSE_FAULT_WRAP_WHERE(ret, name, params, args, (fault_name))

PORTREUSE_FAULT_WRAP(int, socket, (int domain, int type, int protocol), (domain, type, protocol), "socket")
PORTREUSE_FAULT_WRAP_WHERE(int, bind, (int fd, const struct sockaddr* address, socklen_t length), (fd, address, length),
                           ("bind", address, length))
PORTREUSE_FAULT_WRAP(int, listen, (int fd, int backlog), (fd, backlog), "listen")
PORTREUSE_FAULT_WRAP_WHERE(int, connect, (int fd, const struct sockaddr* address, socklen_t length),
                           (fd, address, length), ("connect", address, length))
// accept() fails the way the kernel fails it: when a connection is there to take (the kernel
// then has no descriptor for it), not at once; a server that cannot take its client must not
// look as if it died before the client came. Waits at most 3 s, as the suite's calls do.
namespace {
void await_connection(int fd) {
  pollfd wanted{fd, POLLIN, 0};
  (void)::poll(&wanted, 1, 3000);
}
}  // namespace
PORTREUSE_FAULT_WRAP_WHERE(int, accept, (int fd, struct sockaddr* address, socklen_t* length), (fd, address, length),
                           ("accept") && (await_connection(fd), true))
PORTREUSE_FAULT_WRAP_WHERE(int, accept4, (int fd, struct sockaddr* address, socklen_t* length, int flags),
                           (fd, address, length, flags), ("accept") && (await_connection(fd), true))
PORTREUSE_FAULT_WRAP(pid_t, fork, (void), (), "fork")
PORTREUSE_FAULT_WRAP(int, pipe, (int ends[2]), (ends), "pipe2")
PORTREUSE_FAULT_WRAP(int, pipe2, (int ends[2], int flags), (ends, flags), "pipe2")
PORTREUSE_FAULT_WRAP(int, setsockopt, (int fd, int level, int name, const void* value, socklen_t length),
                     (fd, level, name, value, length), "setsockopt")
PORTREUSE_FAULT_WRAP(int, getsockname, (int fd, struct sockaddr* address, socklen_t* length), (fd, address, length),
                     "getsockname")
PORTREUSE_FAULT_WRAP(ssize_t, send, (int fd, const void* data, size_t size, int flags), (fd, data, size, flags), "send")
PORTREUSE_FAULT_WRAP(ssize_t, recv, (int fd, void* data, size_t size, int flags), (fd, data, size, flags), "recv")
PORTREUSE_FAULT_WRAP(ssize_t, sendto,
                     (int fd, const void* data, size_t size, int flags, const struct sockaddr* to, socklen_t length),
                     (fd, data, size, flags, to, length), "sendto")
PORTREUSE_FAULT_WRAP(ssize_t, recvfrom,
                     (int fd, void* data, size_t size, int flags, struct sockaddr* from, socklen_t* length),
                     (fd, data, size, flags, from, length), "recvfrom")
PORTREUSE_FAULT_WRAP(int, shutdown, (int fd, int how), (fd, how), "shutdown")
PORTREUSE_FAULT_WRAP(int, kill, (pid_t pid, int signal_number), (pid, signal_number), "kill")
