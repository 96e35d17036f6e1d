// The exception every training loop throws when its cancellation predicate says so (the addon turns it
// into ERR_MMESID_CANCELLED).
#pragma once

#include <stdexcept>
#include <string>

namespace mmesid::train {

/// Thrown by a training loop when `cancelled()` returned true.
class TrainingCancelled : public std::runtime_error {
 public:
  explicit TrainingCancelled(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace mmesid::train
