// Storage allocation goes through the device's backend so CUDA memory uses its caching allocator.
#include "core/tensor/Storage.h"

#include "core/backend/Backend.h"
#include "core/util/Logging.h"

namespace loom {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = nbytes ? backend_for(device).allocate(nbytes, device.index) : nullptr;
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
    : data_(data), nbytes_(nbytes), device_(device), owned_(false),
      keep_alive_(std::move(keep_alive)) {}

Storage::~Storage() {
  if (!owned_ || !data_) return;
  try {
    backend_for(device_).deallocate(data_, nbytes_, device_.index);
  } catch (const std::exception& e) {  // destructors never throw (STYLE.md section 6)
    LOG(ERROR) << "Storage: failed to free " << nbytes_ << " bytes on " << device_.str() << ": "
               << e.what();
  }
}

}  // namespace loom
