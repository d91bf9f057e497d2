// Checkpoint load time for a GPT-2 124M-shaped training checkpoint (model weights + AdamW m and v),
// the case `loom generate` / `loom convert` hit: the whole load (resume) vs the weights only.
// Prints one JSON line of seconds (best of --reps runs, warm page cache). Not a unit test.
//   build-cpu/bin/bench_checkpoint /tmp/ckbench      # writes the checkpoint there once, then times
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/random/Generator.h"
#include "io/Checkpoint.h"

namespace {

using loom::Shape;

// GPT-2 124M parameter shapes under Loom's names (fused qkv, tied embeddings).
std::vector<std::pair<std::string, Shape>> gpt2_124m_shapes() {
  const int64_t C = 768, V = 50257, T = 1024;
  std::vector<std::pair<std::string, Shape>> s = {{"wte.weight", {V, C}}, {"wpe.weight", {T, C}}};
  for (int l = 0; l < 12; ++l) {
    std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* ln : {"ln_1", "ln_2"}) {
      s.push_back({b + ln + ".weight", {C}});
      s.push_back({b + ln + ".bias", {C}});
    }
    s.push_back({b + "attn.qkv.weight", {3 * C, C}});
    s.push_back({b + "attn.qkv.bias", {3 * C}});
    s.push_back({b + "attn.proj.weight", {C, C}});
    s.push_back({b + "attn.proj.bias", {C}});
    s.push_back({b + "mlp.fc.weight", {4 * C, C}});
    s.push_back({b + "mlp.fc.bias", {4 * C}});
    s.push_back({b + "mlp.proj.weight", {C, 4 * C}});
    s.push_back({b + "mlp.proj.bias", {C}});
  }
  s.push_back({"ln_f.weight", {C}});
  s.push_back({"ln_f.bias", {C}});
  return s;
}

std::string make_checkpoint(const std::string& root) {
  std::string existing = loom::io::find_latest_checkpoint(root);
  if (!existing.empty()) return existing;
  loom::Generator gen(1);
  loom::io::Checkpoint ck;
  ck.step = 100;
  for (const auto& [name, shape] : gpt2_124m_shapes()) {
    ck.tensors["model/" + name] = loom::Tensor::randn(shape, gen);
    ck.tensors["optim/m/" + name] = loom::Tensor::randn(shape, gen);
    ck.tensors["optim/v/" + name] = loom::Tensor::randn(shape, gen);
  }
  ck.meta["trainer"] = "{\"step\": 100}";
  return loom::io::save_checkpoint(root, ck);
}

template <class Fn>
double best_of(int reps, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [REPS]\n", argv[0]);
    return 1;
  }
  const int reps = argc > 2 ? std::stoi(argv[2]) : 3;
  std::string dir = make_checkpoint(argv[1]);
  size_t n = 0, n_weights = 0;
  double full = best_of(reps, [&] { n = loom::io::load_checkpoint(dir).tensors.size(); });
  double weights = best_of(reps, [&] {
    n_weights =
        loom::io::load_checkpoint(dir, loom::io::LoadOptions::weights_only()).tensors.size();
  });
  std::printf(
      "{\"checkpoint\": \"%s\", \"tensors\": %zu, \"full_load_s\": %.3f, "
      "\"weights\": %zu, \"weights_load_s\": %.3f}\n",
      dir.c_str(), n, full, n_weights, weights);
  return 0;
}
