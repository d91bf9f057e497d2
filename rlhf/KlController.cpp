// Fixed and adaptive KL controllers (see KlController.h).
#include "rlhf/KlController.h"

#include <algorithm>
#include <cmath>

#include "core/util/Check.h"

namespace loom::rlhf {

FixedKlController::FixedKlController(double kl_coef) : KlController(kl_coef) {
  LOOM_CHECK(kl_coef >= 0, "FixedKlController: expected kl_coef >= 0, got ", kl_coef);
}

AdaptiveKlController::AdaptiveKlController(double init_kl_coef, double target, double horizon)
    : KlController(init_kl_coef), target_(target), horizon_(horizon) {
  LOOM_CHECK(init_kl_coef >= 0, "AdaptiveKlController: expected init_kl_coef >= 0, got ",
             init_kl_coef);
  LOOM_CHECK(target > 0, "AdaptiveKlController: expected target > 0, got ", target);
  LOOM_CHECK(horizon > 0, "AdaptiveKlController: expected horizon > 0, got ", horizon);
}

void AdaptiveKlController::update(double current_kl, int64_t n_steps) {
  LOOM_CHECK(std::isfinite(current_kl), "AdaptiveKlController: expected a finite KL, got ",
             current_kl);
  LOOM_CHECK(n_steps >= 0, "AdaptiveKlController: expected n_steps >= 0, got ", n_steps);
  const double error = std::clamp(current_kl / target_ - 1.0, -0.2, 0.2);
  value_ *= 1.0 + error * double(n_steps) / horizon_;
}

std::unique_ptr<KlController> make_kl_controller(bool adaptive, double init_kl_coef, double target,
                                                 double horizon) {
  if (adaptive) return std::make_unique<AdaptiveKlController>(init_kl_coef, target, horizon);
  return std::make_unique<FixedKlController>(init_kl_coef);
}

}  // namespace loom::rlhf
