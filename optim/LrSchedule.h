// Learning-rate schedules as a pure function of the step: linear warmup from peak/warmup to peak
// over `warmup_steps`, then cosine, linear or constant decay to min_lr at `total_steps` (llm.c /
// nanoGPT convention, 0-based steps):
//   step < warmup:            lr = peak * (step + 1) / warmup
//   warmup <= step < total:   r = (step - warmup) / (total - warmup)
//                             cosine: min + (peak - min) * 0.5 * (1 + cos(pi r));
//                             linear: peak - (peak - min) * r;   constant: peak
//   step >= total:            min_lr (constant: peak)
//   LrSchedule s{.kind = DecayKind::Cosine, .peak_lr = 6e-4, .min_lr = 6e-5,
//                .warmup_steps = 700, .total_steps = 19073};
//   opt.set_lr(s.lr_at(step));
#pragma once

#include <cstdint>
#include <string>

namespace loom::optim {

enum class DecayKind { Cosine, Linear, Constant };

// "cosine", "linear" or "constant"; anything else is a ValueError naming the choices.
DecayKind decay_kind_from_string(const std::string& name);

struct LrSchedule {
  DecayKind kind = DecayKind::Cosine;
  double peak_lr = 6e-4;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;  // decay ends here (includes the warmup steps)

  // Throws ValueError for negative lrs/steps or warmup_steps > total_steps.
  void validate() const;
  double lr_at(int64_t step) const;
};

}  // namespace loom::optim
