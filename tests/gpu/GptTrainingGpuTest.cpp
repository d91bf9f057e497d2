// A tiny GPT trained 20 steps on the GPU in fp32 (TF32 off) matches the same run on the CPU within
// 1e-4 relative at every step (issue 5): same init (Philox draws are identical on both devices),
// same batches, AdamW with warmup + cosine and clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "core/random/Generator.h"
#include "models/GPT.h"
#include "optim/AdamW.h"
#include "optim/ClipGradNorm.h"
#include "optim/LrSchedule.h"
#include "tests/gpu/GpuCompare.h"

namespace loom {
namespace {

std::vector<double> train_losses(Device device, int steps) {
  models::GPTConfig c;
  c.n_layer = 4;
  c.n_head = 4;
  c.n_embd = 64;
  c.vocab_size = 256;
  c.block_size = 32;
  models::GPT model(c, {}, DType::F32, device);
  model.init_weights(1234);
  optim::AdamWOptions o;
  o.lr = 3e-3;
  o.beta2 = 0.95;
  o.weight_decay = 0.1;
  optim::AdamW opt(model.named_parameters(), o);
  optim::LrSchedule sched{optim::DecayKind::Cosine, 3e-3, 3e-4, 5, steps};
  Generator data(99);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    // Batches drawn on the CPU so both runs see the same tokens.
    Tensor u = Tensor::rand({8, 33}, data, DType::F64, Device::cpu(), 0.0, 256.0);
    Tensor ids = u.to(DType::I64);
    Tensor x = ids.narrow(1, 0, 32).contiguous().to(device);
    Tensor y = ids.narrow(1, 1, 32).contiguous().to(device);
    opt.set_lr(sched.lr_at(s));
    Tensor loss = model.loss(x, y);
    losses.push_back(loss.item());
    loss.backward();
    optim::clip_grad_norm(model.parameters(), 1.0);
    opt.step();
    opt.zero_grad();
  }
  return losses;
}

TEST(GptTrainingGpuTest, TwentyFp32StepsMatchTheCpuRun) {
  LOOM_REQUIRE_GPU();
  std::vector<double> cpu = train_losses(Device::cpu(), 20);
  std::vector<double> gpu = train_losses(Device::cuda(0), 20);
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    // Issue 5 bound: the two devices sum in different orders (cuBLASLt vs OpenBLAS tiles), so the
    // runs drift apart at the level of f32 rounding amplified by 20 AdamW steps.
    EXPECT_NEAR(gpu[i], cpu[i], 1e-4 * std::abs(cpu[i])) << "step " << i + 1;
  }
  EXPECT_LT(cpu.back(), cpu.front());  // it trained at all
}

}  // namespace
}  // namespace loom
