// KL controllers: the fixed one never moves; the adaptive one follows Ziegler et al. (2019)
// beta <- beta * (1 + clip(KL/target - 1, -0.2, 0.2) * n_steps / horizon) over a sequence of
// updates.
#include <gtest/gtest.h>

#include <cmath>

#include "core/util/Check.h"
#include "rlhf/KlController.h"

namespace loom::rlhf {
namespace {

TEST(KlControllerTest, FixedNeverChanges) {
  FixedKlController kl(0.05);
  kl.update(100.0, 512);
  kl.update(0.0, 512);
  EXPECT_EQ(kl.value(), 0.05);
  EXPECT_THROW(FixedKlController(-1.0), ValueError);
}

TEST(KlControllerTest, AdaptiveFollowsTheProportionalRule) {
  AdaptiveKlController kl(0.2, /*target=*/6.0, /*horizon=*/10000.0);
  double want = 0.2;
  kl.update(12.0, 256);  // error 1.0 clipped to 0.2
  want *= 1.0 + 0.2 * 256 / 10000.0;
  EXPECT_DOUBLE_EQ(kl.value(), want);
  kl.update(6.6, 256);  // error 0.1
  want *= 1.0 + 0.1 * 256 / 10000.0;
  EXPECT_DOUBLE_EQ(kl.value(), want);
  kl.update(6.0, 256);  // on target: unchanged
  EXPECT_DOUBLE_EQ(kl.value(), want);
  kl.update(0.0, 1000);  // error -1 clipped to -0.2
  want *= 1.0 - 0.2 * 1000 / 10000.0;
  EXPECT_DOUBLE_EQ(kl.value(), want);
  kl.update(4.5, 500);  // error -0.25 clipped to -0.2
  want *= 1.0 - 0.2 * 500 / 10000.0;
  EXPECT_DOUBLE_EQ(kl.value(), want);
  // Written out: 0.2 * 1.00512 * 1.00256 * 0.98 * 0.99.
  EXPECT_NEAR(kl.value(), 0.2 * 1.00512 * 1.00256 * 0.98 * 0.99, 1e-15);
  kl.set_value(0.3);  // restore from a checkpoint
  EXPECT_EQ(kl.value(), 0.3);
}

TEST(KlControllerTest, FactoryAndValidation) {
  EXPECT_NE(dynamic_cast<AdaptiveKlController*>(make_kl_controller(true, 0.1, 6, 1e4).get()),
            nullptr);
  EXPECT_NE(dynamic_cast<FixedKlController*>(make_kl_controller(false, 0.1, 0, 0).get()), nullptr);
  EXPECT_THROW(AdaptiveKlController(0.1, 0.0, 1e4), ValueError);
  EXPECT_THROW(AdaptiveKlController(0.1, 6.0, 0.0), ValueError);
  AdaptiveKlController kl(0.1, 6.0, 1e4);
  EXPECT_THROW(kl.update(std::nan(""), 1), ValueError);
}

}  // namespace
}  // namespace loom::rlhf
