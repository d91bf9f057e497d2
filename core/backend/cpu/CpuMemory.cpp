// CPU memory: 64-byte aligned allocations with live/peak byte counters and an optional cap. Freed
// blocks of 64 KiB and more are cached by size class and reused, so steady-state training steps do
// not page-fault fresh memory in every step. The cache never holds more than the high-water mark
// of live bytes leaves room for (live + cached <= the most ever live at once): caching keeps the
// process at its peak working set instead of adding to it. Large blocks are mapped from the kernel
// directly and unmapped when not cached, so malloc's heap never fragments around them and freed
// memory leaves the process. allocated_bytes() counts live tensor bytes only, never the cache.
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
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

// Freed blocks bigger than kCacheMinBytes, by size class. `live` arguments are the live bytes
// at the call; high_water is the most live bytes ever (the cache fills only the gap below it).
// Large blocks (cls >= kCacheMinBytes: page-aligned, whole pages) come from mmap.
void* map_block(size_t cls) {
  void* p = ::mmap(nullptr, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void unmap_block(void* p, size_t cls) { ::munmap(p, cls); }

struct BlockCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0;
  size_t high_water = 0;

  void note_live(size_t live) {
    std::lock_guard<std::mutex> lock(mu);
    high_water = std::max(high_water, live);
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
  bool put(void* p, size_t cls, size_t live) {
    std::lock_guard<std::mutex> lock(mu);
    if (live + cached + cls > high_water) return false;
    free_blocks[cls].push_back(p);
    cached += cls;
    return true;
  }
  // Frees cached blocks (largest classes first) until live + cached + want fits under the
  // high-water mark: a new block is about to be allocated.
  void make_room(size_t want, size_t live) {
    std::lock_guard<std::mutex> lock(mu);
    while (cached > 0 && live + cached + want > high_water) {
      auto largest = free_blocks.end();
      for (auto it = free_blocks.begin(); it != free_blocks.end(); ++it)
        if (!it->second.empty() && (largest == free_blocks.end() || it->first > largest->first))
          largest = it;
      unmap_block(largest->second.back(), largest->first);
      largest->second.pop_back();
      cached -= largest->first;
    }
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [cls, blocks] : free_blocks)
      for (void* p : blocks) unmap_block(p, cls);
    free_blocks.clear();
    cached = 0;
  }
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // NOLINT: outlives static storages freed at exit
  return *cache;
}

void* fresh_block(size_t cls) {
  if (cls < kCacheMinBytes) return std::aligned_alloc(64, cls);
  void* p = map_block(cls);
  if (p) return p;
  block_cache().release();  // give cached blocks back and try once more
  return map_block(cls);
}

void free_block(void* p, size_t cls) {
  if (cls < kCacheMinBytes)
    std::free(p);
  else
    unmap_block(p, cls);
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
  if (!p && cls >= kCacheMinBytes) block_cache().make_room(cls, now);
  if (!p) p = fresh_block(cls);
  if (!p) {
    throw OutOfMemoryError(detail::str_cat("cpu allocator: out of memory: requested ", nbytes,
                                           " bytes, allocated ", now, " bytes (device cpu)"));
  }
  size_t cur = allocated_.fetch_add(nbytes) + nbytes;
  size_t peak = peak_.load();
  while (cur > peak && !peak_.compare_exchange_weak(peak, cur)) {}
  if (cls >= kCacheMinBytes) block_cache().note_live(cur);
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes, int) {
  const size_t cls = size_class(nbytes);
  const size_t live = allocated_.fetch_sub(nbytes) - nbytes;
  if (cls < kCacheMinBytes || !block_cache().put(ptr, cls, live)) free_block(ptr, cls);
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
