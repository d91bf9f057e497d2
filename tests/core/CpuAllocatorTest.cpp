// The CPU allocator's block cache: a freed large block is reused by the next request of its size
// class, live-byte accounting ignores the cache, release_cached() empties it, small blocks are
// never cached, and live + cached bytes never exceed the most ever live at once (the cache fills
// the gap below the process's peak working set, never adds to it).
#include <gtest/gtest.h>

#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {
namespace {

TEST(CpuAllocatorTest, FreedLargeBlockIsReusedAndNotCountedAsLive) {
  CpuBackend& be = the_cpu_backend();
  be.release_cached();
  const size_t live = be.allocated_bytes(0);
  const size_t n = size_t(3) << 20;  // 3 MiB: above the 64 KiB caching threshold
  void* p = be.allocate(n, 0);
  EXPECT_EQ(be.allocated_bytes(0), live + n);
  be.deallocate(p, n, 0);
  EXPECT_EQ(be.allocated_bytes(0), live);
  EXPECT_GE(be.cached_bytes(), n);
  // A slightly smaller request falls in the same size class (3 MiB rounds to itself; 3 MiB - 100
  // rounds up to it) and gets the cached block back.
  void* q = be.allocate(n - 100, 0);
  EXPECT_EQ(q, p);
  EXPECT_EQ(be.allocated_bytes(0), live + n - 100);
  be.deallocate(q, n - 100, 0);
  be.release_cached();
  EXPECT_EQ(be.cached_bytes(), 0u);
}

TEST(CpuAllocatorTest, SmallBlocksAreNotCachedAndBlocksAreAligned) {
  CpuBackend& be = the_cpu_backend();
  be.release_cached();
  void* p = be.allocate(1000, 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  be.deallocate(p, 1000, 0);
  EXPECT_EQ(be.cached_bytes(), 0u);
  void* big = be.allocate((size_t(1) << 20) + 1, 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % 64, 0u);
  be.deallocate(big, (size_t(1) << 20) + 1, 0);
  be.release_cached();
}

TEST(CpuAllocatorTest, TensorsReuseCachedMemoryWithCorrectContents) {
  CpuBackend& be = the_cpu_backend();
  be.release_cached();
  { Tensor a = Tensor::full({1 << 18}, 7.0); }  // 1 MiB, now cached
  EXPECT_GE(be.cached_bytes(), size_t(1) << 20);
  Tensor z = Tensor::zeros({1 << 18});  // reuses the block: must still read as zeros
  EXPECT_EQ(be.cached_bytes(), 0u);
  const float* d = z.data<float>();
  for (int64_t i = 0; i < z.numel(); i += 4099) EXPECT_EQ(d[i], 0.0f);
}

TEST(CpuAllocatorTest, CacheNeverRaisesTheWorkingSetAboveThePeakLive) {
  CpuBackend& be = the_cpu_backend();
  be.release_cached();
  const size_t base = be.allocated_bytes(0);
  const size_t big = size_t(48) << 20, other = size_t(20) << 20;  // distinct size classes
  void* a = be.allocate(big, 0);
  be.deallocate(a, big, 0);  // cached: live + cached stays at the peak so far
  const size_t cached = be.cached_bytes();
  EXPECT_GE(cached, big);
  // A request of another class while `big` is cached: the cache gives up enough of itself that
  // live + cached + the new block stays under the peak (here: everything; the peak was `big`).
  void* b = be.allocate(other, 0);
  EXPECT_LE(be.allocated_bytes(0) + be.cached_bytes(), base + cached + (size_t(1) << 20));
  EXPECT_LT(be.cached_bytes(), cached);
  be.deallocate(b, other, 0);
  be.release_cached();
}

}  // namespace
}  // namespace loom::cpu
