// The GPT model configured as Llama / Qwen2 / Mistral against transformers 4.45.2 (golden
// llama_family.h5 and hf_llama/<name>/config.json from tests/golden/gen_llama_family.py): tiny
// random models with odd sizes, GQA / MQA / full heads, Llama-3 and linear rope scaling, tied and
// untied heads, q/k/v biases. The config comes from config.json (models/HfLlama.h), the weights
// through the HF -> Loom name mapping. Claims: equal logits, equal greedy continuations,
// KV-cached logits equal the full forward's (rope offsets, GQA cache), a padded vocabulary changes
// nothing, HF -> Loom -> HF is bit-identical, and unsupported configs are errors naming the field.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "models/Generate.h"
#include "models/HfLlama.h"
#include "tests/support/Golden.h"

namespace loom::models {
namespace {

const char* const kModels[] = {"llama_gqa_llama3_tied", "llama_mha_linear_untied",
                               "qwen2_mqa_bias_tied", "mistral_gqa_untied"};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string config_path(const std::string& name) {
  return testing::golden_dir() + "/hf_llama/" + name + "/config.json";
}

GPTConfig config_of(const std::string& name) {
  return hf_llama_config(read_text(config_path(name)), config_path(name));
}

// The golden's tensors under their HF names: the names are those loom_to_hf_llama gives for
// the model of config c (so a name the mapping invents is a missing dataset, not a silent skip).
std::map<std::string, Tensor> hf_weights(const testing::GoldenFile& g, const std::string& name,
                                         const GPTConfig& c) {
  GPT probe(c);
  std::map<std::string, Tensor> loom;
  for (const auto& [n, p] : probe.named_parameters()) loom[n] = p.detach();
  std::map<std::string, Tensor> hf;
  for (const auto& [n, t] : loom_to_hf_llama(loom, c)) hf[n] = g.get(name + "/weights/" + n);
  return hf;
}

// A model of config c (vocabulary padded to `padded` rows when > 0) holding the golden weights.
std::unique_ptr<GPT> load_model(const testing::GoldenFile& g, const std::string& name,
                                int64_t padded = 0) {
  GPTConfig c = config_of(name);
  std::map<std::string, Tensor> hf = hf_weights(g, name, c);
  if (padded > 0) {
    c.real_vocab_size = c.vocab_size;
    c.vocab_size = padded;
  }
  std::map<std::string, Tensor> loom = hf_llama_to_loom(hf, c);
  auto model = std::make_unique<GPT>(c);
  NoGradGuard no_grad;
  for (auto& [n, p] : model->named_parameters()) p.copy_(loom.at(n));
  model->eval();
  return model;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0.0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// The issue's bar for f32 logits against transformers. Both sides compute in f32 (eps 6e-8) with
// different summation orders, and Loom's rotary tables are computed in double where transformers
// forms the angles in f32; with logits up to ~20 the observed difference is 1e-6 to 8e-6, while a
// wrong rope-scaling band moves logits by ~10.
constexpr double kLogitTol = 1e-4;

TEST(LlamaFamilyTest, ConfigJsonGivesTheArchitecture) {
  GPTConfig a = config_of("llama_gqa_llama3_tied");
  EXPECT_EQ(a.n_head, 6);
  EXPECT_EQ(a.kv_heads(), 2);
  EXPECT_EQ(a.ffn_size(), 70);
  EXPECT_TRUE(a.tie_embeddings);
  EXPECT_EQ(a.rope_scaling.kind, RopeScalingKind::Llama3);
  EXPECT_EQ(a.rope_scaling.original_max_positions, 64);
  EXPECT_FALSE(a.bias);
  EXPECT_FALSE(a.has_qkv_bias());
  GPTConfig q = config_of("qwen2_mqa_bias_tied");
  EXPECT_EQ(q.kv_heads(), 1);
  EXPECT_TRUE(q.has_qkv_bias());
  EXPECT_FALSE(q.bias);
  EXPECT_EQ(q.norm_eps, 1e-6);
  GPTConfig m = config_of("mistral_gqa_untied");
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(m.rope_theta, 1e6);
  EXPECT_EQ(config_of("llama_mha_linear_untied").rope_scaling.kind, RopeScalingKind::Linear);
}

TEST(LlamaFamilyTest, LogitsEqualTransformersF32) {
  testing::GoldenFile g("llama_family.h5");
  for (const char* name : kModels) {
    SCOPED_TRACE(name);
    auto model = load_model(g, name);
    NoGradGuard no_grad;
    Tensor got = model->forward(g.get(std::string(name) + "/ids"));
    Tensor want = g.get(std::string(name) + "/logits");
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(max_abs_diff(got, want), kLogitTol);
  }
}

TEST(LlamaFamilyTest, PaddedVocabularyGivesTheSameLogits) {
  testing::GoldenFile g("llama_family.h5");
  for (const char* name : {"llama_gqa_llama3_tied", "mistral_gqa_untied"}) {
    SCOPED_TRACE(name);
    auto model = load_model(g, name, /*padded=*/128);
    NoGradGuard no_grad;
    Tensor got = model->forward(g.get(std::string(name) + "/ids"));
    EXPECT_LE(max_abs_diff(got, g.get(std::string(name) + "/logits")), kLogitTol);
  }
}

TEST(LlamaFamilyTest, GreedyContinuationsEqualTransformers) {
  testing::GoldenFile g("llama_family.h5");
  for (const char* name : kModels) {
    for (int row : {0, 1}) {
      SCOPED_TRACE(std::string(name) + " row " + std::to_string(row));
      auto model = load_model(g, name);
      std::vector<int64_t> want =
          g.get(std::string(name) + "/greedy/" + std::to_string(row)).to_vector<int64_t>();
      const size_t prompt = 5;  // gen_llama_family.py PROMPT
      std::vector<int64_t> ids(want.begin(), want.begin() + prompt);
      SamplingOptions o;
      o.temperature = 0.0;
      o.max_new_tokens = int64_t(want.size() - prompt);
      std::vector<int64_t> got = generate(*model, {ids}, o)[0];
      EXPECT_EQ(got, std::vector<int64_t>(want.begin() + prompt, want.end()));
    }
  }
}

// The 13 golden tokens fed in chunks 5, 1, 3, 1, 1, 2: each chunk's logits (rotary angles of
// positions past..past+n, the GQA cache) equal the full forward at those positions.
TEST(LlamaFamilyTest, CachedLogitsEqualFullForward) {
  testing::GoldenFile g("llama_family.h5");
  for (const char* name : kModels) {
    SCOPED_TRACE(name);
    auto model = load_model(g, name);
    NoGradGuard no_grad;
    Tensor ids = g.get(std::string(name) + "/ids");
    Tensor full = model->forward(ids);
    KVCache cache = model->new_cache(ids.size(0), ids.size(1));
    int64_t pos = 0;
    for (int64_t n : {5, 1, 3, 1, 1, 2}) {
      Tensor got = model->forward_cached(ids.narrow(1, pos, n).contiguous(), cache);
      // f32 (eps 6e-8), logits up to ~20, the same products summed in another order (explicit
      // softmax over the cache vs the fused kernel): observed <= 1e-5; a wrong rotary offset or
      // cache slot moves logits by > 1e-2.
      EXPECT_LE(max_abs_diff(got, full.narrow(1, pos, n)), 1e-4) << "chunk at " << pos;
      pos += n;
    }
  }
}

TEST(LlamaFamilyTest, HfToLoomToHfIsBitIdentical) {
  testing::GoldenFile g("llama_family.h5");
  for (const char* name : kModels) {
    SCOPED_TRACE(name);
    const GPTConfig c = config_of(name);
    std::map<std::string, Tensor> hf = hf_weights(g, name, c);
    std::map<std::string, Tensor> back = loom_to_hf_llama(hf_llama_to_loom(hf, c), c);
    ASSERT_EQ(back.size(), hf.size());
    for (const auto& [n, t] : hf) {
      ASSERT_TRUE(back.count(n)) << n;
      EXPECT_EQ(back.at(n).shape(), t.shape()) << n;
      EXPECT_EQ(back.at(n).to_vector<float>(), t.to_vector<float>()) << n;
    }
  }
}

std::string value_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ValueError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ValueError";
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << "missing \"" << (part) << "\" in: " << (text)

TEST(LlamaFamilyTest, UnsupportedConfigsAreErrorsNamingTheField) {
  const std::string base = R"("hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 48, "vocab_size": 61, "max_position_embeddings": 64)";
  auto error_of = [&](const std::string& extra) {
    return value_error([&] { hf_llama_config("{" + base + ", " + extra + "}", "c.json"); });
  };
  std::string m = error_of(R"("architectures": ["GPTJForCausalLM"])");
  EXPECT_CONTAINS(m, "GPTJForCausalLM");
  EXPECT_CONTAINS(m, "Qwen2ForCausalLM");
  EXPECT_CONTAINS(error_of(R"("architectures": ["MistralForCausalLM"], "sliding_window": 16)"),
                  "sliding_window");
  EXPECT_CONTAINS(error_of(R"("architectures": ["LlamaForCausalLM"],
                              "rope_scaling": {"rope_type": "yarn", "factor": 2})"),
                  "yarn");
  EXPECT_CONTAINS(error_of(R"("architectures": ["LlamaForCausalLM"], "num_key_value_heads": 3)"),
                  "n_kv_head");
  EXPECT_CONTAINS(error_of(R"("architectures": ["LlamaForCausalLM"], "attention_bias": true)"),
                  "mlp_bias");
  EXPECT_CONTAINS(error_of(R"("architectures": ["LlamaForCausalLM"], "hidden_act": "gelu")"),
                  "hidden_act");
  // A size beyond Loom's bound of the field it becomes names both (2^61, found by the drills)
  const std::string huge = value_error([&] {
    hf_llama_config(R"({"hidden_size": 2305843009213693952, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 48, "vocab_size": 61,
        "max_position_embeddings": 64, "architectures": ["LlamaForCausalLM"]})", "c.json");
  });
  EXPECT_CONTAINS(huge, "hidden_size");
  EXPECT_CONTAINS(huge, "model.n_embd");
}

TEST(LlamaFamilyTest, MissingAndLeftoverTensorsAreErrors) {
  testing::GoldenFile g("llama_family.h5");
  const GPTConfig c = config_of("mistral_gqa_untied");
  std::map<std::string, Tensor> hf = hf_weights(g, "mistral_gqa_untied", c);
  std::map<std::string, Tensor> missing = hf;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  EXPECT_CONTAINS(value_error([&] { hf_llama_to_loom(missing, c); }), "model.layers.1.mlp.up_proj");
  std::map<std::string, Tensor> extra = hf;
  extra["model.layers.0.self_attn.q_norm.weight"] = Tensor::ones({6});
  EXPECT_CONTAINS(value_error([&] { hf_llama_to_loom(extra, c); }), "q_norm");
}

}  // namespace
}  // namespace loom::models
