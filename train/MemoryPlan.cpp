// MemoryPlan (see MemoryPlan.h). Units: bytes until RankMemory, which holds MiB.
#include "train/MemoryPlan.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "config/ConfigDefaults.h"
#include "io/HfSource.h"
#include "models/GPT.h"
#include "optim/ZeroAdamW.h"
#include "train/Trainer.h"

namespace loom::train {

namespace {

using config::RunConfig;

constexpr double kMiB = double(1 << 20);
// RSS minus the peak of live tensor bytes, measured by bench_memory over `loom train` runs of GPT-2
// 124M / 350M on 1 to 4 ranks: 39 to 58 MiB (code, libraries, malloc's heaps, OpenBLAS buffers).
constexpr double kProcess = 50 * kMiB;
// On top of that under data parallelism: OpenMPI's staging of the 25 MiB DP buckets (measured at
// dp=2 on one host, shared-memory transport: 176 MiB RSS beyond the tensors instead of 58).
constexpr double kDataParallelComm = 120 * kMiB;
// vocab_parallel_linear_cross_entropy computes about 2^23 logits per chunk.
constexpr int64_t kHeadChunk = int64_t(1) << 23;

// The shapes one stage of the model works with.
struct Dims {
  int64_t b = 0, T = 0, C = 0, heads = 0, layers = 0, vocab_rows = 0;
  int tp = 1;
  double elt = 4;  // bytes per saved activation element
  bool dropout = false, first = false, last = false;
  double A() const { return double(b * T * C) * elt; }  // one (b, T, C) activation
};

// Bytes one block saves for backward (GPT-2 block; `x` counts the block's input):
// NONE keeps x, ln_1(x), qkv (3/tp), attention out and its (b,T,C/tp) copy (2/tp), the residual
// h, ln_2(h), fc out and GELU out (4/tp each): 4 + 13/tp activations, plus with dropout the
// (b, h/tp, T, T) probabilities before and after dropout. SELECTIVE drops the GELU output and the
// probabilities; FULL keeps x alone.
double block_saved(const Dims& d, RunConfig::Recompute mode) {
  const double attn_probs = d.dropout ? 2.0 * double(d.b * d.heads / d.tp * d.T * d.T) * d.elt : 0;
  switch (mode) {
    case RunConfig::FULL: return d.A();
    case RunConfig::SELECTIVE: return (4.0 + 9.0 / d.tp) * d.A();
    default: return (4.0 + 13.0 / d.tp) * d.A() + attn_probs;
  }
}

// What one micro-batch keeps alive on this stage after its forward pass.
double micro_batch_saved(const Dims& d, RunConfig::Recompute mode) {
  double s = double(d.layers) * block_saved(d, mode);
  if (d.last) s += 2.0 * d.A();  // ln_f's input and output
  return s;
}

// Backward of a recomputed block: its whole NONE set plus the gradients flowing through it.
double recompute_working_set(const Dims& d, RunConfig::Recompute mode) {
  if (mode == RunConfig::NONE || d.layers == 0) return 0;
  return block_saved(d, RunConfig::NONE) + 8.0 / d.tp * d.A();
}

// The LM head's transient on the last stage: the fused head + cross entropy (CPU, f32) computes
// the (V/tp, C) weight gradient in its forward and two (rows, V/tp) logits chunks at a time;
// elsewhere the (N, V/tp) logits, their softmax and their gradient exist at once.
double head_transient(const Dims& d, bool fused) {
  if (!d.last) return 0;
  const double N = double(d.b * d.T), V = double(d.vocab_rows);
  if (!fused) return 3.0 * N * V * 4.0;
  const double rows = std::clamp(double(kHeadChunk) / std::max(V, 1.0), 1.0, N);
  return V * double(d.C) * 4.0 + N * double(d.C) * 4.0 + 2.0 * rows * V * 4.0;
}

// Sequences per micro-batch forward: preference stages run chosen and rejected together.
int64_t sequences(const RunConfig& cfg) {
  const int64_t b = cfg.batch().micro_batch_size();
  return cfg.stage() == RunConfig::REWARD || cfg.stage() == RunConfig::DPO ? 2 * b : b;
}

// The shape another model of the run (PPO's reward model or critic) has: the one its source
// records (a Loom checkpoint or hf:DIR, as ValueModels builds it); nullopt, the policy's, with no
// source or one that records no shape.
using SourceShape = std::optional<models::GPTConfig>;
SourceShape source_shape(const RunConfig& cfg, const std::string& source) {
  if (source.empty() || source[0] == '@') return std::nullopt;
  RunConfig c = cfg;  // the run's layout; the model section comes from the source alone
  c.clear_model();
  c.mutable_model()->set_vocab_pad_multiple(cfg.model().vocab_pad_multiple());
  c.set_init_from(source);
  io::model_from_init(c);
  if (!c.model().has_n_layer()) return std::nullopt;
  config::apply_defaults(c, 1);
  return gpt_config_from(c);
}

// PPO's other models, read once for every stage: whether each exists, and its shape.
struct OtherModels {
  bool reward = false, critic = false;
  SourceShape reward_shape, critic_shape;
};

OtherModels other_models_of(const RunConfig& cfg) {
  OtherModels o;
  if (cfg.stage() != RunConfig::PPO) return o;
  const config::PpoConfig& ppo = cfg.ppo();
  for (const config::RewardSourceConfig& src : ppo.reward())
    o.reward = o.reward || src.has_reward_model();
  o.critic = ppo.algorithm() == config::PpoConfig::PPO;
  if (o.reward) o.reward_shape = source_shape(cfg, ppo.reward_model());
  if (o.critic)
    o.critic_shape = o.reward && ppo.critic_init() == ppo.reward_model()
                         ? o.reward_shape
                         : source_shape(cfg, ppo.critic_init());
  return o;
}

// Bytes stage s holds of the run's other models (P: its bytes of the policy). DPO: the frozen
// reference. PPO: the reference (frozen, the policy's shape), the reward model (frozen) and, for
// the PPO algorithm, the critic (trained: weights, gradients, AdamW moments), each of its own
// source's shape.
double other_models_bytes(const RunConfig& cfg, const OtherModels& others, double P, int s) {
  if (cfg.stage() == RunConfig::DPO) return P;
  if (cfg.stage() != RunConfig::PPO) return 0.0;
  const int tp = int(cfg.parallel().tp()), pp = int(cfg.parallel().pp());
  auto params_of = [&](const SourceShape& shape) {  // this stage's f32 bytes of that model
    return shape ? double(models::GPT::local_parameters(*shape, tp, s, pp)) * 4.0 : P;
  };
  return P + (others.reward ? params_of(others.reward_shape) : 0.0) +
         (others.critic ? 4.0 * params_of(others.critic_shape) : 0.0);
}

// The shapes stage s of model g works with under cfg's layout and batch.
Dims stage_dims(const RunConfig& cfg, const models::GPTConfig& g, int s) {
  const int tp = int(cfg.parallel().tp()), pp = int(cfg.parallel().pp());
  const auto [begin, end] = models::stage_layers(g.n_layer, pp, s);
  Dims d;
  d.b = sequences(cfg);
  d.T = cfg.data().seq_len();
  d.C = g.n_embd;
  d.heads = g.n_head;
  d.layers = end - begin;
  d.vocab_rows = g.vocab_size / tp;
  d.tp = tp;
  d.elt = cfg.dtype() == RunConfig::F32 ? 4.0 : 2.0;
  d.dropout = g.dropout > 0.0;
  d.first = s == 0;
  d.last = s == pp - 1;
  return d;
}

RankMemory plan_stage(const RunConfig& cfg, const models::GPTConfig& g, const OtherModels& others,
                      int s) {
  const int tp = int(cfg.parallel().tp()), pp = int(cfg.parallel().pp());
  const int64_t dp = std::max<int64_t>(cfg.parallel().dp(), 1), m = config::grad_accum_steps(cfg);
  const Dims d = stage_dims(cfg, g, s);
  const double P = double(models::GPT::local_parameters(g, tp, s, pp)) * 4.0;  // f32 master
  // What the optimizer updates (gradients, state, buckets): the whole model, or LoRA's adapters.
  const bool lora = cfg.has_lora();
  const double A = lora ? double(models::GPT::local_lora_parameters(
                              g, {cfg.lora().target_modules().begin(),
                                  cfg.lora().target_modules().end()},
                              cfg.lora().rank(), tp, s, pp)) * 4.0
                        : 0.0;
  const double T = lora ? A : P;
  const bool adamw = cfg.optimizer().type() != config::OptimizerConfig::SGD;
  const bool zero = cfg.parallel().zero_stage() == 1 && adamw && dp > 1;
  const double state = adamw ? 2.0 * T : (cfg.optimizer().momentum() != 0.0 ? T : 0.0);

  RankMemory r;
  r.stage = s;
  r.params = P + A;
  r.grads = T;
  r.optimizer = zero ? state / double(dp) : state;
  // Micro-batches a stage holds at once: 1F1B keeps at most pp - s in flight, GPipe all of them.
  const bool gpipe = cfg.parallel().schedule() == config::ParallelConfig::GPIPE;
  r.micro_batches_held = pp == 1 ? 1 : gpipe ? m : std::min<int64_t>(m, pp - s);
  // Gradients exist during a forward pass under DP (they live in the reducer's buckets, zeroed
  // after each step) and once a backward has run before it in the same step.
  const bool grads_in_forward = dp > 1 || (!gpipe && m > r.micro_batches_held);
  const double act = micro_batch_saved(d, cfg.recompute());
  r.activations = double(r.micro_batches_held) * act;
  const bool fused = cfg.device() != RunConfig::CUDA && cfg.dtype() == RunConfig::F32;
  const double head = head_transient(d, fused);
  const double embedding_grad =  // dense; none for LoRA's frozen table
      d.first && !lora ? double(d.vocab_rows * d.C) * 4.0 : 0.0;
  // ZeRO-1: one all-gather round's buffers (this rank's part and every rank's)
  const double gather = std::min(double(optim::kZeroGatherChunk) * 4.0, T / double(dp));
  r.comm = zero ? gather * double(dp + 1) : 0.0;
  const double base = r.params + r.optimizer + r.comm + (grads_in_forward ? r.grads : 0.0);
  const double forward_end = base + r.activations + head;
  const double first_backward = base + r.activations + recompute_working_set(d, cfg.recompute());
  const double backward_end = r.params + r.optimizer + r.comm + r.grads +
                              double(r.micro_batches_held - 1) * act +
                              embedding_grad;
  // Saving a checkpoint under ZeRO-1 gathers each parameter's moments on the rank that writes
  // it (about a shard's worth per rank); the gradient buckets stay.
  const double zero_save =
      zero ? r.params + r.grads + r.optimizer + r.comm + state / double(dp) : 0.0;
  r.transient = std::max(head, embedding_grad);
  r.other_models = other_models_bytes(cfg, others, P, s);
  r.process = kProcess + (dp > 1 ? kDataParallelComm : 0.0);
  r.peak = std::max({forward_end, first_backward, backward_end, zero_save}) + r.other_models +
           r.process;
  for (double* x : {&r.params, &r.grads, &r.optimizer, &r.activations, &r.transient, &r.comm,
                    &r.other_models, &r.process, &r.peak})
    *x /= kMiB;
  return r;
}

}  // namespace

std::string RankMemory::str() const {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "stage %d: parameters %.0f, gradients %.0f, optimizer %.0f, activations %.0f "
                "(%lld micro-batch(es) held), largest transient %.0f, communication %.0f, "
                "other models %.0f, process %.0f -> peak %.0f MiB",
                stage, params, grads, optimizer, activations, (long long)micro_batches_held,
                transient, comm, other_models, process, peak);
  return buf;
}

std::vector<RankMemory> plan_memory(const RunConfig& cfg) {
  const models::GPTConfig g = gpt_config_from(cfg);
  const OtherModels others = other_models_of(cfg);
  std::vector<RankMemory> out;
  for (int s = 0; s < int(cfg.parallel().pp()); ++s) out.push_back(plan_stage(cfg, g, others, s));
  return out;
}

}  // namespace loom::train
