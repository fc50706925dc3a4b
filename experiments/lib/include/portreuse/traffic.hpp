// Loopback clients against one or more listeners: which listener does the kernel hand each new
// connection to? Used where listeners share a port (SO_REUSEPORT, dual stack) and the lesson is
// where the connections went, not what they carried.
#pragma once

#include <optional>
#include <vector>

#include "portreuse/net.hpp"

namespace portreuse {

struct AcceptTally {
  int connected = 0;          // clients whose connect() succeeded
  std::vector<int> accepted;  // per listener, in the order given
  std::vector<std::optional<Endpoint>>
      first_peer;           // per listener: the peer of its first connection, as accept() saw it
  std::error_code failure;  // the first connect() that failed, if any

  [[nodiscard]] int total_accepted() const;
};

// Opens `clients` connections to `target`, one after another, and accepts each on whichever of
// `listeners` the kernel queued it to (accepting as it goes, so no backlog overflows). Every
// connection is closed with a reset (SO_LINGER {1, 0}) before returning, so none leaves a
// TIME_WAIT behind. Bounded: gives up waiting for accepts after `deadline`.
AcceptTally tally_accepts(const std::vector<int>& listeners, const Endpoint& target, int clients,
                          Millis deadline = kDefaultDeadline);

}  // namespace portreuse
