// LrSchedule::lr_at: warmup + cosine/linear/constant decay, a pure function of the step.
#include "optim/LrSchedule.h"

#include <cmath>
#include <numbers>

#include "core/util/Check.h"

namespace loom::optim {

DecayKind decay_kind_from_string(const std::string& name) {
  if (name == "cosine") return DecayKind::Cosine;
  if (name == "linear") return DecayKind::Linear;
  if (name == "constant") return DecayKind::Constant;
  throw ValueError("LrSchedule: expected decay kind one of {cosine, linear, constant}, got '" +
                   name + "'");
}

void LrSchedule::validate() const {
  LOOM_CHECK(peak_lr >= 0.0 && min_lr >= 0.0, "LrSchedule: expected peak_lr, min_lr >= 0, got ",
             peak_lr, ", ", min_lr);
  LOOM_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
             "LrSchedule: expected 0 <= warmup_steps <= total_steps, got warmup_steps ",
             warmup_steps, " and total_steps ", total_steps);
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  LOOM_CHECK(step >= 0, "LrSchedule: expected step >= 0, got ", step);
  if (step < warmup_steps) return peak_lr * double(step + 1) / double(warmup_steps);
  if (kind == DecayKind::Constant) return peak_lr;
  if (step >= total_steps) return min_lr;
  const double r = double(step - warmup_steps) / double(total_steps - warmup_steps);
  if (kind == DecayKind::Linear) return peak_lr - (peak_lr - min_lr) * r;
  return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * r));
}

}  // namespace loom::optim
