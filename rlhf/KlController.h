// KL coefficient controllers for PPO's per-token penalty -beta * KL(pi || pi_ref).
// Fixed: beta never changes. Adaptive (Ziegler et al. 2019, "Fine-Tuning Language Models from
// Human Preferences", eq. 2): after a batch of n_steps samples with observed KL,
//   e = clip(KL / target - 1, -0.2, 0.2),   beta <- beta * (1 + e * n_steps / horizon).
//
//   auto kl = make_kl_controller(/*adaptive=*/true, 0.2, /*target=*/6.0, /*horizon=*/10000);
//   rewards = compute_rewards(score, logp, ref_logp, mask, kl->value());
//   kl->update(mean_kl, batch_size);
#pragma once

#include <cstdint>
#include <memory>

namespace loom::rlhf {

class KlController {
 public:
  virtual ~KlController() = default;
  double value() const { return value_; }
  // Restores the coefficient from a checkpoint.
  void set_value(double v) { value_ = v; }
  // Observed mean KL (per sequence, summed over tokens) over a batch of n_steps sequences.
  virtual void update(double current_kl, int64_t n_steps) = 0;

 protected:
  explicit KlController(double init) : value_(init) {}
  double value_;
};

class FixedKlController : public KlController {
 public:
  explicit FixedKlController(double kl_coef);
  void update(double, int64_t) override {}
};

class AdaptiveKlController : public KlController {
 public:
  // ValueError unless init_kl_coef >= 0, target > 0, horizon > 0.
  AdaptiveKlController(double init_kl_coef, double target, double horizon);
  void update(double current_kl, int64_t n_steps) override;
  double target() const { return target_; }
  double horizon() const { return horizon_; }

 private:
  double target_;
  double horizon_;
};

// Adaptive when `adaptive`, else fixed at init_kl_coef (target and horizon then unused).
std::unique_ptr<KlController> make_kl_controller(bool adaptive, double init_kl_coef, double target,
                                                 double horizon);

}  // namespace loom::rlhf
