// Thread-local switch for recording autograd history. NoGradGuard turns it off for a scope
// (optimizer steps, evaluation, generation).
#pragma once

namespace loom::autograd {

class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace loom::autograd

namespace loom {
using autograd::NoGradGuard;
}
