// Trainer, stage PPO (see Trainer.h): one step = one PPO iteration; the actor's and the critic's
// optimizer steps (DP-averaged, clipped), and the critic, its optimizer state and the KL
// coefficient in checkpoints. Split from Trainer.cpp to keep each file one screenful of concerns.
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "optim/ClipGradNorm.h"
#include "parallel/ProcessGroups.h"
#include "rlhf/PpoStage.h"
#include "train/Trainer.h"

namespace loom::train {

using nlohmann::json;

double Trainer::ppo_train_step(int64_t step, double& grad_norm) {
  const double lr = schedule_.lr_at(step - 1);
  opt_->set_lr(lr);
  critic_opt_->set_lr(lr);
  rlhf::PpoIteration it = ppo_->iterate(step, [&] { ppo_optimizer_step(grad_norm); });
  stage_metrics_ = it.metrics;
  if (!std::isfinite(it.loss))
    throw NonFiniteError(detail::str_cat("train: PPO loss is ", it.loss, " at step ", step,
                                         "; hint: lower optimizer.lr or ppo.clip"));
  return it.loss;
}

void Trainer::ppo_optimizer_step(double& grad_norm) {
  std::vector<Tensor> actor = model_->parameters(), critic = ppo_->critic().parameters();
  if (grid_ && grid_->dp_size() > 1) {
    const double inv = 1.0 / double(grid_->dp_size());
    for (const auto* list : {&actor, &critic})
      for (const Tensor& p : *list) {
        Tensor g = p.grad();
        if (!g.defined()) continue;  // unused on every rank alike (e.g. the critic's LM head)
        grid_->dp_group().all_reduce(g);
        g.mul_(inv);
      }
  }
  const double clip = cfg_.optimizer().grad_clip();
  grad_norm = clip > 0 ? optim::clip_grad_norm(actor, clip) : optim::grad_norm(actor);
  if (clip > 0) optim::clip_grad_norm(critic, clip);
  opt_->step();
  critic_opt_->step();
  opt_->zero_grad();
  critic_opt_->zero_grad();
}

std::string Trainer::add_ppo_state(io::Checkpoint& ck) const {
  json j;
  for (const auto& [name, p] : ppo_->critic().named_parameters())
    ck.tensors["critic/" + name] = p.detach();
  j["critic_param_steps"] = json::object();
  for (const auto& [name, st] : critic_opt_->states()) {
    for (const auto& [key, buf] : st.buffers) ck.tensors["critic_optim/" + key + "/" + name] = buf;
    j["critic_param_steps"][name] = st.step;
  }
  j["critic_optimizer_steps"] = critic_opt_->step_count();
  j["kl_coef"] = ppo_->kl_controller().value();
  return j.dump();
}

void Trainer::load_ppo_state(const io::Checkpoint& ck, const std::string& meta,
                             const std::string& dir) {
  const json j = json::parse(meta);
  std::string problems;
  auto params = ppo_->critic().named_parameters();
  for (const auto& [name, p] : params) {
    auto it = ck.tensors.find("critic/" + name);
    if (it == ck.tensors.end())
      problems += "\n  missing tensor critic/" + name;
    else if (it->second.shape() != p.shape())
      problems += "\n  critic/" + name + ": expected shape " + shape_str(p.shape()) + ", got " +
                  shape_str(it->second.shape());
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", dir, ":", problems);
  {
    NoGradGuard g;
    for (const auto& [name, p] : params) p.detach().copy_(ck.tensors.at("critic/" + name));
  }
  const json steps = j.value("critic_param_steps", json::object());
  for (const auto& [key, t] : ck.tensors) {
    if (key.rfind("critic_optim/", 0) != 0) continue;
    const size_t slash = key.find('/', 13);
    const std::string buf = key.substr(13, slash - 13), name = key.substr(slash + 1);
    optim::ParamState& st = critic_opt_->state(name);
    st.buffers[buf] = t.to(device_).clone();
    st.step = steps.value(name, int64_t(0));
  }
  critic_opt_->set_step_count(j.value("critic_optimizer_steps", int64_t(0)));
  ppo_->kl_controller().set_value(j.value("kl_coef", ppo_->kl_controller().value()));
}

}  // namespace loom::train
