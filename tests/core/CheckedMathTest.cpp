// Checked size arithmetic (core/util/CheckedMath.h) and its use by Shape / Tensor::empty (issue 15
// D1: sizes from input were multiplied unchecked, so a [2^60, 4] f32 shape wrapped to 0 bytes).
#include <gtest/gtest.h>

#include <functional>

#include "core/tensor/Tensor.h"
#include "core/util/CheckedMath.h"

namespace loom {
namespace {

constexpr int64_t kMax = INT64_MAX;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "";
}

TEST(CheckedMathTest, MulAndAddDetectOverflowAtTheInt64Edge) {
  EXPECT_EQ(try_mul(kMax, 1), kMax);
  EXPECT_EQ(try_mul(kMax, 2), std::nullopt);
  EXPECT_EQ(try_mul(int64_t(1) << 31, int64_t(1) << 32), std::nullopt);  // 2^63
  EXPECT_EQ(try_mul(-(int64_t(1) << 31), int64_t(1) << 32), INT64_MIN);
  EXPECT_EQ(try_mul(int64_t(1) << 31, int64_t(1) << 31), int64_t(1) << 62);
  EXPECT_EQ(try_add(kMax - 1, 1), kMax);
  EXPECT_EQ(try_add(kMax, 1), std::nullopt);
}

TEST(CheckedMathTest, CheckedMulNamesWhatOverflowed) {
  std::string m = error_of([] { checked_mul(int64_t(1) << 62, 4, "safetensors tensor 'w'"); });
  EXPECT_NE(m.find("safetensors tensor 'w'"), std::string::npos) << m;
  EXPECT_NE(m.find("overflows"), std::string::npos) << m;
  EXPECT_EQ(checked_add(2, 3, "x"), 5);
}

TEST(CheckedMathTest, NumelRejectsNegativeAndOverflowingShapesEvenWithAZero) {
  EXPECT_EQ(try_numel(Shape{2, 3, 4}), 24);
  EXPECT_EQ(try_numel(Shape{}), 1);
  EXPECT_EQ(try_numel(Shape{5, 0}), 0);
  EXPECT_EQ(try_numel(Shape{-1, 4}), std::nullopt);
  EXPECT_EQ(try_numel(Shape{int64_t(1) << 60, 16}), std::nullopt);
  // NB: the element count is 0, but the contiguous strides of this shape would overflow.
  EXPECT_EQ(try_numel(Shape{0, int64_t(1) << 40, int64_t(1) << 40}), std::nullopt);
}

TEST(CheckedMathTest, ShapeNumelThrowsInsteadOfWrapping) {
  std::string m = error_of([] { shape_numel(Shape{int64_t(1) << 62, 4}); });
  EXPECT_NE(m.find("(4611686018427387904, 4)"), std::string::npos) << m;
}

TEST(CheckedMathTest, EmptyRejectsAShapeWhoseByteCountOverflows) {
  // 2^60 * 4 elements overflow; 2^61 f32 elements fit as a count but not as bytes (2^63).
  std::string m = error_of([] { Tensor::empty({int64_t(1) << 60, 4}, DType::F32); });
  EXPECT_NE(m.find("Tensor::empty"), std::string::npos) << m;
  m = error_of([] { Tensor::empty({int64_t(1) << 61}, DType::F32); });
  EXPECT_NE(m.find("needs more than 2^63 bytes"), std::string::npos) << m;
  m = error_of([] { Tensor::empty({-3}, DType::F32); });
  EXPECT_NE(m.find("expected sizes >= 0"), std::string::npos) << m;
}

}  // namespace
}  // namespace loom
