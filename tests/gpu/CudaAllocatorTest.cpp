// The CUDA caching allocator (TESTPLAN G-6 standalone part): byte counters, block reuse, and an
// over-size request that throws OutOfMemoryError carrying requested / free / total / reserved bytes
// and the device, after which ordinary allocations still work.
#include <gtest/gtest.h>

#include <string>

#include "core/backend/Backend.h"
#include "tests/gpu/GpuCompare.h"

namespace loom::gputest {
namespace {

TEST(CudaAllocatorTest, CountsLiveAndPeakBytes) {
  LOOM_REQUIRE_GPU();
  Backend& be = *cuda_backend();
  const size_t base = be.allocated_bytes(0);
  be.reset_peak(0);
  {
    Tensor t = Tensor::empty({1000}, DType::F32, Device::cuda());
    EXPECT_EQ(be.allocated_bytes(0), base + 4000);
  }
  EXPECT_EQ(be.allocated_bytes(0), base);
  EXPECT_EQ(be.peak_allocated_bytes(0), base + 4000);
}

TEST(CudaAllocatorTest, ReusesFreedBlocks) {
  LOOM_REQUIRE_GPU();
  Backend& be = *cuda_backend();
  void* a = be.allocate(3 << 20, 0);
  be.deallocate(a, 3 << 20, 0);
  void* b = be.allocate(3 << 20, 0);  // same rounded size: served from the cache
  EXPECT_EQ(a, b);
  be.deallocate(b, 3 << 20, 0);
}

TEST(CudaAllocatorTest, OversizeRequestThrowsOutOfMemoryWithNumbers) {
  LOOM_REQUIRE_GPU();
  Backend& be = *cuda_backend();
  const size_t base = be.allocated_bytes(0);
  const size_t huge = size_t(1) << 50;  // 1 PiB: more than any device has
  try {
    be.allocate(huge, 0);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("requested " + std::to_string(huge)), std::string::npos) << msg;
    for (const char* word : {"free ", "total ", "reserved", "cuda:0"})
      EXPECT_NE(msg.find(word), std::string::npos) << word << " missing in: " << msg;
  }
  void* p = be.allocate(1 << 20, 0);  // the device is still usable
  ASSERT_NE(p, nullptr);
  be.deallocate(p, 1 << 20, 0);
  EXPECT_EQ(be.allocated_bytes(0), base);
  Tensor t = Tensor::full({256}, 3.0, DType::F32, Device::cuda());
  EXPECT_EQ(t.to_vector<float>()[255], 3.0f);
}

}  // namespace
}  // namespace loom::gputest
