// CPU memory: 64-byte aligned allocations with live/peak byte counters and an optional cap.
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Env.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace loom::cpu {

void* CpuBackend::allocate(size_t nbytes, int) {
  size_t limit = limit_.load();
  size_t now = allocated_.load();
  if (limit != 0 && now + nbytes > limit) {
    throw OutOfMemoryError(detail::str_cat(
        "cpu allocator: out of memory: requested ", nbytes, " bytes, free ", limit - now,
        " bytes, allocated ", now, " bytes, limit ", limit, " bytes (device cpu)"));
  }
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) {
    throw OutOfMemoryError(detail::str_cat("cpu allocator: out of memory: requested ", nbytes,
                                           " bytes, allocated ", now, " bytes (device cpu)"));
  }
  size_t cur = allocated_.fetch_add(nbytes) + nbytes;
  size_t peak = peak_.load();
  while (cur > peak && !peak_.compare_exchange_weak(peak, cur)) {}
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes, int) {
  std::free(ptr);
  allocated_.fetch_sub(nbytes);
}

void CpuBackend::copy_from_host(void* dst, const void* src, size_t nbytes, int) {
  std::memcpy(dst, src, nbytes);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t nbytes, int) {
  std::memcpy(dst, src, nbytes);
}

CpuBackend& the_cpu_backend() {
  static CpuBackend* be = [] {
    auto* b = new CpuBackend();  // NOLINT: lives for the whole process (used by static storages)
    int n = int(env::get_int(env::kNumThreads, 0, 0, 4096));
    if (n > 0) set_num_threads(n);
    return b;
  }();
  return *be;
}

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  LOOM_CHECK(n >= 1, "set_num_threads: expected n >= 1, got ", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace loom::cpu
