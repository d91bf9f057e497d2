// Device runtime of the CUDA backend: error helper, the caching allocator, per-device state
// (compute stream, error flag) and the memory / copy / synchronize methods. cuda_backend() returns
// nullptr, without throwing, when the runtime reports no usable device.
#include <string>

#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

void throw_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  std::string msg = detail::str_cat("CUDA error ", int(err), " (", cudaGetErrorName(err), ": ",
                                    cudaGetErrorString(err), ") in ", expr, " at ", file, ":", line);
  if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  throw Error(msg);
}

namespace {
// Makes `device` current for the guard's lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) CUDA_CHECK(cudaSetDevice(device));
    changed_ = prev_ != device;
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool changed_ = false;
};

// RAII owner of one non-blocking stream.
class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// RAII owner of a raw device buffer that bypasses the caching allocator.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t nbytes) { CUDA_CHECK(cudaMalloc(&p_, nbytes)); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};
}  // namespace

// ---- caching allocator -------------------------------------------------------------------------

size_t CachingAllocator::round_size(size_t nbytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSplit = size_t(1) << 20;
  if (nbytes == 0) nbytes = 1;
  if (nbytes < kSplit) return (nbytes + kSmall - 1) / kSmall * kSmall;
  return (nbytes + kLarge - 1) / kLarge * kLarge;
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) cudaFree(p);
  for (auto& [p, b] : live_) cudaFree(p);
}

void CachingAllocator::free_cached_locked() {
  for (auto& [size, blocks] : free_) {
    for (void* p : blocks) {
      cudaFree(p);
      reserved_ -= size;
    }
  }
  free_.clear();
}

void CachingAllocator::empty_cache() {
  DeviceGuard g(device_);
  std::lock_guard<std::mutex> lock(mu_);
  CUDA_CHECK(cudaDeviceSynchronize());
  free_cached_locked();
}

void* CachingAllocator::allocate(size_t nbytes) {
  DeviceGuard g(device_);
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state before retrying
      cudaDeviceSynchronize();  // blocks in the cache may still be in use by queued kernels
      free_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemoryError(detail::str_cat(
          "cuda allocator: out of memory on device cuda:", device_, ": requested ", nbytes,
          " bytes (", size, " rounded), free ", free_b, " bytes, total ", total_b,
          " bytes, reserved by Loom ", reserved_, " bytes, allocated ", allocated_, " bytes"));
    }
    CUDA_CHECK(err);
    reserved_ += size;
  }
  live_[p] = Block{size, nbytes};
  allocated_ += nbytes;
  if (allocated_ > peak_) peak_ = allocated_;
  return p;
}

void CachingAllocator::deallocate(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  LOOM_INTERNAL_ASSERT(it != live_.end(), "cuda allocator: freeing unknown pointer on device ",
                       device_);
  allocated_ -= it->second.requested;
  free_[it->second.size].push_back(ptr);
  live_.erase(it);
}

size_t CachingAllocator::allocated() const { std::lock_guard<std::mutex> l(mu_); return allocated_; }
size_t CachingAllocator::peak() const { std::lock_guard<std::mutex> l(mu_); return peak_; }
size_t CachingAllocator::reserved() const { std::lock_guard<std::mutex> l(mu_); return reserved_; }
void CachingAllocator::reset_peak() { std::lock_guard<std::mutex> l(mu_); peak_ = allocated_; }

// ---- per-device state -----------------------------------------------------------------------

struct DeviceState {
  // NB: construct with `device` current (device_state does this) so the stream lives there.
  explicit DeviceState(int device) : alloc(device), flag(sizeof(int)) {
    CUDA_CHECK(cudaMemset(flag.get(), 0, sizeof(int)));
  }
  CachingAllocator alloc;
  Stream stream;
  DeviceBuffer flag;
};

namespace {
std::mutex g_states_mu;
std::vector<std::unique_ptr<DeviceState>>& states() {
  static auto* v = new std::vector<std::unique_ptr<DeviceState>>();  // NOLINT: process lifetime
  return *v;
}
}  // namespace

DeviceState& device_state(int device) {
  std::lock_guard<std::mutex> lock(g_states_mu);
  auto& v = states();
  LOOM_CHECK(device >= 0 && device < int(v.size()), "cuda: expected a device index in [0, ",
             v.size(), "), got ", device);
  if (!v[size_t(device)]) {
    DeviceGuard g(device);
    v[size_t(device)] = std::make_unique<DeviceState>(device);
  }
  return *v[size_t(device)];
}

cudaStream_t compute_stream(int device) { return device_state(device).stream.get(); }

cudaStream_t stream_for(const Tensor& t) {
  int dev = t.device().index;
  cudaStream_t s = compute_stream(dev);
  CUDA_CHECK(cudaSetDevice(dev));
  return s;
}

int* error_flag(int device) { return static_cast<int*>(device_state(device).flag.get()); }

void check_error_flag(int device, cudaStream_t s, const std::string& msg) {
  int* flag = error_flag(device);
  int host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  if (host != 0) {
    CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), s));
    throw ValueError(msg);
  }
}

// ---- Backend memory methods ------------------------------------------------------------------

CudaBackend::CudaBackend(int device_count) : device_count_(device_count) {
  std::lock_guard<std::mutex> lock(g_states_mu);
  states().resize(size_t(device_count));
}
CudaBackend::~CudaBackend() = default;

void* CudaBackend::allocate(size_t nbytes, int device) {
  return device_state(device).alloc.allocate(nbytes);
}
void CudaBackend::deallocate(void* ptr, size_t, int device) {
  device_state(device).alloc.deallocate(ptr);
}
void CudaBackend::copy_from_host(void* dst, const void* src, size_t nbytes, int device) {
  cudaStream_t s = compute_stream(device);
  DeviceGuard g(device);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}
void CudaBackend::copy_to_host(void* dst, const void* src, size_t nbytes, int device) {
  cudaStream_t s = compute_stream(device);
  DeviceGuard g(device);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}
void CudaBackend::synchronize(int device) {
  cudaStream_t s = compute_stream(device);
  DeviceGuard g(device);
  CUDA_CHECK(cudaStreamSynchronize(s));
}
size_t CudaBackend::allocated_bytes(int device) const {
  return device_state(device).alloc.allocated();
}
size_t CudaBackend::peak_allocated_bytes(int device) const {
  return device_state(device).alloc.peak();
}
void CudaBackend::reset_peak(int device) { device_state(device).alloc.reset_peak(); }
void CudaBackend::empty_cache(int device) { device_state(device).alloc.empty_cache(); }

}  // namespace loom::cuda

namespace loom {
Backend* cuda_backend() {
  static cuda::CudaBackend* be = []() -> cuda::CudaBackend* {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n <= 0) {
      cudaGetLastError();
      return nullptr;
    }
    return new cuda::CudaBackend(n);  // NOLINT: lives for the whole process (static storages)
  }();
  return be;
}
}  // namespace loom
