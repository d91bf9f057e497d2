// Storage: one ref-counted allocation on one device, plus the version counter that autograd uses to
// catch in-place writes to tensors saved for backward. Storage uniquely owns its pointer and gives it
// back to its device's allocator on destruction. Views share a Storage (and so its version).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/tensor/Device.h"

namespace loom {

class Storage {
 public:
  // Allocates nbytes on `device` through that device's backend allocator.
  Storage(size_t nbytes, Device device);
  // Wraps memory that someone else owns (e.g. an mmap'ed file); `keep_alive` is held until the
  // storage dies. The data is treated as writable only if `writable`.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool owned_ = true;
  std::shared_ptr<void> keep_alive_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace loom
