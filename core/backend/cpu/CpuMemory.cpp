// CPU memory: 64-byte aligned allocations with live/peak byte counters and an optional cap. Freed
// blocks of 64 KiB and more are cached by size class and reused (bounded to 1/8 of physical
// memory), so steady-state training steps do not page-fault fresh memory in every step.
// allocated_bytes() counts live tensor bytes only, never the cache.
#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Env.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace loom::cpu {

namespace {

// Blocks of at least this size are kept for reuse when freed: a training step allocates the same
// large buffers every step, and fresh pages from the kernel cost a page fault and a zeroing per
// 4 KiB (measured: ~1 s per GPT-2 124M step). Smaller blocks come cheaply from malloc's heap.
constexpr size_t kCacheMinBytes = size_t(64) << 10;

// Size class of a cached block: sizes rounded up to 1/8 of their power of two (<= 12.5% slack),
// so a request reuses any freed block of its class.
size_t size_class(size_t nbytes) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded < kCacheMinBytes) return rounded;
  size_t pow2 = size_t(1) << (63 - __builtin_clzll(rounded));
  size_t step = pow2 / 8;
  return (rounded + step - 1) / step * step;
}

// Freed blocks bigger than kCacheMinBytes, by size class, up to `cap` bytes in all.
struct BlockCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0;
  size_t cap = 0;

  BlockCache() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    cap = pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 8 : size_t(1) << 30;
  }
  void* take(size_t cls) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = free_blocks.find(cls);
    if (it == free_blocks.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached -= cls;
    return p;
  }
  bool put(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mu);
    if (cached + cls > cap) return false;
    free_blocks[cls].push_back(p);
    cached += cls;
    return true;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [cls, blocks] : free_blocks)
      for (void* p : blocks) std::free(p);
    free_blocks.clear();
    cached = 0;
  }
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // NOLINT: outlives static storages freed at exit
  return *cache;
}

void* fresh_block(size_t cls) {
  void* p = std::aligned_alloc(64, cls);
  if (p || cls < kCacheMinBytes) return p;
  block_cache().release();  // give cached blocks back and try once more
  return std::aligned_alloc(64, cls);
}

}  // namespace

void* CpuBackend::allocate(size_t nbytes, int) {
  size_t limit = limit_.load();
  size_t now = allocated_.load();
  if (limit != 0 && now + nbytes > limit) {
    throw OutOfMemoryError(detail::str_cat(
        "cpu allocator: out of memory: requested ", nbytes, " bytes, free ", limit - now,
        " bytes, allocated ", now, " bytes, limit ", limit, " bytes (device cpu)"));
  }
  const size_t cls = size_class(nbytes);
  void* p = cls >= kCacheMinBytes ? block_cache().take(cls) : nullptr;
  if (!p) p = fresh_block(cls);
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
  const size_t cls = size_class(nbytes);
  if (cls < kCacheMinBytes || !block_cache().put(ptr, cls)) std::free(ptr);
  allocated_.fetch_sub(nbytes);
}

size_t CpuBackend::cached_bytes() const {
  BlockCache& c = block_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

void CpuBackend::release_cached() { block_cache().release(); }

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
