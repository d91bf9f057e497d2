// Hugging Face GPT-2 import/export against fixtures made by tests/golden/gen_hf_gpt2.py with PyPI
// transformers (tests/golden/hf/<model>/ and hf_gpt2.h5): Loom's logits equal transformers' on the
// same ids, hf -> loom -> hf reproduces every tensor bit for bit (directly, through a Loom
// checkpoint, sharded, and with vocabulary padding), tokenizer files travel along, and bad configs
// or tensors fail naming the file and field. The exported directories are left under
// <tmp>/loom_hf_export/ so `gen_hf_gpt2.py --check-export <tmp>/loom_hf_export` can load them
// with transformers. Llama / Qwen2 / Mistral fixtures (gen_llama_family.py) round-trip through a
// Loom checkpoint bit for bit with their config.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/random/Generator.h"
#include "data/Tokenizer.h"
#include "config/ConfigLoader.h"
#include "models/GPT.h"
#include "tests/support/Golden.h"
#include "io/Checkpoint.h"
#include "io/HfConvert.h"
#include "io/Safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loom::io {
namespace {

const char* kTokenizerText = "the quick brown fox jumps over the lazy dog and then the dog sleeps";
const char* kModels[] = {"gpt2_tied_v61", "gpt2_untied_v300", "gpt2_sharded_v301"};

std::string fixture(const std::string& name) { return testing::golden_dir() + "hf/" + name; }

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// max |a - b| / max |b|: the "1e-5 relative", taken against the logit scale so logits
// near zero do not turn rounding noise into a large ratio.
double max_rel(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(y[i]));
  }
  return err / scale;
}

Tensor loom_logits(const HfModel& m, const std::string& fixture_name, DType dtype) {
  models::GPT model(m.config, {}, dtype);
  model.eval();
  NoGradGuard no_grad;
  std::vector<std::string> names;
  for (auto& [name, p] : model.named_parameters()) {
    p.copy_(m.params.at(name));
    names.push_back(name);
  }
  EXPECT_EQ(names.size(), m.params.size());  // every converted tensor is a model parameter
  testing::GoldenFile g("hf_gpt2.h5");
  return model.forward(g.get(fixture_name + "/ids"));
}

// Every tensor of `got_dir` equals the same-named tensor of `want_dir`, byte for byte.
void expect_same_tensors(const std::string& got_dir, const std::string& want_dir) {
  auto got = load_safetensors_dir(got_dir), want = load_safetensors_dir(want_dir);
  ASSERT_EQ(got.size(), want.size()) << got_dir;
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got.at(name).dtype(), w.dtype()) << name;
    EXPECT_EQ(got.at(name).shape(), w.shape()) << name;
    EXPECT_EQ(bytes_of(got.at(name)), bytes_of(w)) << name;
  }
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

class HfConvertTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("loom_hfconvert_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  fs::path tmp_;
};

TEST_P(HfConvertTest, LogitsMatchTransformers) {
  std::string name = GetParam();
  HfModel m = hf_to_loom(fixture(name));
  testing::GoldenFile g("hf_gpt2.h5");
  // f32: transformers and Loom sum in different orders; the bar is the 1e-5 relative.
  double f32 = max_rel(loom_logits(m, name, DType::F32), g.get(name + "/logits"));
  EXPECT_LE(f32, 1e-5);
  // f64 from the same f32 weights: only summation order differs (~1e-16 per op); 1e-12 margin.
  double f64 = max_rel(loom_logits(m, name, DType::F64), g.get(name + "/logits_f64"));
  EXPECT_LE(f64, 1e-12);
  std::printf("%s: max relative logit error f32 %.2e, f64 %.2e\n", name.c_str(), f32, f64);
}

TEST_P(HfConvertTest, DirectRoundTripIsBitIdentical) {
  HfModel m = hf_to_loom(fixture(GetParam()));
  fs::path out = tmp_ / "direct";
  save_hf_model(out.string(), m.params, m.config, m.vocab_size, m.tokenizer, m.hf_config_json);
  expect_same_tensors(out.string(), fixture(GetParam()));
  EXPECT_EQ(read_json((out / "config.json").string()),
            read_json(fixture(GetParam()) + "/config.json"));
}

TEST_P(HfConvertTest, CheckpointRoundTripIsBitIdenticalWithTokenizer) {
  std::string name = GetParam();
  fs::path root = tmp_ / "ckpt";
  std::string step = convert_hf_to_loom_checkpoint(fixture(name), root.string());
  Checkpoint ck = load_checkpoint(step);
  EXPECT_EQ(ck.step, 0);
  config::RunConfig run = config::parse_text(ck.meta.at("config"));
  HfModel m = hf_to_loom(fixture(name));
  EXPECT_EQ(run.model().n_layer(), m.config.n_layer);
  EXPECT_EQ(run.model().vocab_size(), m.vocab_size);
  EXPECT_EQ(run.model().tie_embeddings(), m.config.tie_embeddings);
  EXPECT_EQ(ck.tensors.size(), m.params.size());
  for (const auto& [pname, t] : m.params)
    EXPECT_EQ(bytes_of(ck.tensors.at("model/" + pname)), bytes_of(t)) << pname;

  fs::path out = fs::temp_directory_path() / "loom_hf_export" / name;  // kept for the Python check
  fs::remove_all(out);
  convert_loom_to_hf(root.string(), out.string());  // the root: its latest checkpoint is used
  expect_same_tensors(out.string(), fixture(name));
  EXPECT_EQ(read_json((out / "config.json").string()), read_json(fixture(name) + "/config.json"));

  testing::GoldenFile g("hf_gpt2.h5");
  HfTokenizerFiles tok = checkpoint_tokenizer_files(step);
  EXPECT_EQ(tok.empty(), !g.has(name + "/tok_ids"));
  if (tok.empty()) return;
  EXPECT_EQ(run.data().tokenizer_json().empty(), tok.tokenizer_json.empty());
  for (const fs::path& dir : {out, root / "tokenizer"}) {
    auto t = fs::exists(dir / "tokenizer.json")
                 ? data::Tokenizer::from_tokenizer_json((dir / "tokenizer.json").string())
                 : data::Tokenizer::from_files((dir / "vocab.json").string(),
                                               (dir / "merges.txt").string());
    std::vector<int32_t> ids = t.encode(kTokenizerText);
    EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.end()),
              g.get(name + "/tok_ids").to_vector<int64_t>())
        << dir;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfConvertTest, ::testing::ValuesIn(kModels));

// Llama / Qwen2 / Mistral (tests/golden/hf_llama, gen_llama_family.py): HF -> Loom checkpoint ->
// HF gives every tensor back bit for bit, the same config.json (architecture included: the
// checkpoint keeps the imported one) and a generation_config.json; the checkpoint's model section
// is config.json's shape.
TEST_F(HfConvertTest, LlamaFamilyCheckpointRoundTripIsBitIdentical) {
  for (const char* name : {"llama_gqa_llama3_tied", "llama_mha_linear_untied",
                           "mistral_gqa_untied", "qwen2_mqa_bias_tied"}) {
    SCOPED_TRACE(name);
    const std::string src = testing::golden_dir() + "hf_llama/" + name;
    const fs::path root = tmp_ / name;
    const std::string step = convert_hf_to_loom_checkpoint(src, root.string());
    config::RunConfig run = config::parse_text(load_checkpoint(step).meta.at("config"));
    const json hf = read_json(src + "/config.json");
    EXPECT_EQ(run.model().n_layer(), hf["num_hidden_layers"]);
    EXPECT_EQ(run.model().n_kv_head(), hf.value("num_key_value_heads", hf["num_attention_heads"]));
    EXPECT_EQ(run.model().intermediate_size(), hf["intermediate_size"]);
    EXPECT_EQ(run.model().position(), config::ModelConfig::ROPE);
    const fs::path out = tmp_ / (std::string(name) + "_export");
    convert_loom_to_hf(root.string(), out.string());
    expect_same_tensors(out.string(), src);
    json got = read_json((out / "config.json").string());
    EXPECT_EQ(got, hf) << got.dump(1);
    EXPECT_TRUE(fs::exists(out / "generation_config.json"));
    // Sharded past 20 kB (with model.safetensors.index.json), it reads back the same.
    const fs::path sharded = tmp_ / (std::string(name) + "_sharded");
    convert_loom_to_hf(root.string(), sharded.string(), {.max_shard_bytes = 20000});
    EXPECT_TRUE(fs::exists(sharded / "model.safetensors.index.json"));
    expect_same_tensors(sharded.string(), src);
    const HfModel a = hf_to_loom(sharded.string()), b = hf_to_loom(src);
    for (const auto& [pname, t] : b.params) EXPECT_EQ(bytes_of(a.params.at(pname)), bytes_of(t));
  }
}

// bf16 and f16 weights of a Llama-family directory load as their exact f32 values.
TEST_F(HfConvertTest, LlamaFamilyHalfPrecisionWeightsLoad) {
  const std::string src = testing::golden_dir() + "hf_llama/mistral_gqa_untied";
  const HfModel f32 = hf_to_loom(src);
  for (DType dt : {DType::BF16, DType::F16}) {
    const fs::path dir = tmp_ / "half";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(src + "/config.json", dir / "config.json");
    std::map<std::string, Tensor> t = load_safetensors_dir(src);
    for (auto& [k, v] : t) v = v.to(dt);
    save_safetensors((dir / kSafetensorsFile).string(), t);
    const HfModel half = hf_to_loom(dir.string());
    for (const auto& [pname, w] : f32.params)
      EXPECT_EQ(bytes_of(half.params.at(pname)), bytes_of(w.to(dt).to(DType::F32))) << pname;
  }
}

class HfConvertErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("loom_hferr_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::copy(fixture("gpt2_tied_v61"), dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void edit_config(const std::function<void(json&)>& edit) {
    json j = read_json((dir_ / "config.json").string());
    edit(j);
    std::ofstream((dir_ / "config.json").string()) << j.dump(2);
  }
  void edit_tensors(const std::function<void(std::map<std::string, Tensor>&)>& edit) {
    auto t = load_safetensors_dir(dir_.string());
    for (auto& [k, v] : t) v = v.clone();  // detach from the file we are about to replace
    edit(t);
    save_safetensors((dir_ / kSafetensorsFile).string(), t);
  }
  void expect_error(std::initializer_list<std::string> parts, const HfImportOptions& o = {}) {
    try {
      hf_to_loom(dir_.string(), o);
      ADD_FAILURE() << "expected CheckpointError";
    } catch (const CheckpointError& e) {
      for (const auto& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " in: " << e.what();
    }
  }
  fs::path dir_;
};

TEST_F(HfConvertErrorTest, VocabPaddingAddsZeroRowsAndExportStripsThem) {
  HfImportOptions opts;
  opts.vocab_pad_multiple = 8;
  HfModel m = hf_to_loom(dir_.string(), opts);
  EXPECT_EQ(m.vocab_size, 61);
  EXPECT_EQ(m.config.vocab_size, 64);
  Tensor wte = m.params.at("wte.weight");
  EXPECT_EQ(wte.narrow(0, 61, 3).to_vector<float>(), std::vector<float>(3 * 32, 0.0f));
  testing::GoldenFile g("hf_gpt2.h5");
  Tensor logits = loom_logits(m, "gpt2_tied_v61", DType::F32).narrow(2, 0, 61);
  EXPECT_LE(max_rel(logits, g.get("gpt2_tied_v61/logits")), 1e-5);  // as LogitsMatchTransformers
  fs::path out = dir_ / "export";
  save_hf_model(out.string(), m.params, m.config, m.vocab_size, m.tokenizer, "");
  expect_same_tensors(out.string(), fixture("gpt2_tied_v61"));
  json cfg = read_json((out / "config.json").string());
  EXPECT_EQ(cfg["vocab_size"], 61);
  EXPECT_EQ(cfg["eos_token_id"], 60);  // no tokenizer and no stored config: the last id
  // Through a checkpoint the padding is recorded in the run config and stripped on export.
  convert_hf_to_loom_checkpoint(dir_.string(), (dir_ / "ck").string(), opts);
  convert_loom_to_hf((dir_ / "ck").string(), (dir_ / "export2").string());
  expect_same_tensors((dir_ / "export2").string(), fixture("gpt2_tied_v61"));
}

TEST_F(HfConvertErrorTest, FreshConfigTakesEndOfTextFromTheTokenizer) {
  HfModel m = hf_to_loom(fixture("gpt2_untied_v300"));
  fs::path out = dir_ / "fresh";
  save_hf_model(out.string(), m.params, m.config, m.vocab_size, m.tokenizer, /*hf_config=*/"");
  json cfg = read_json((out / "config.json").string());
  EXPECT_EQ(cfg["eos_token_id"], 0);  // the trainer put <|endoftext|> first
  EXPECT_EQ(cfg["bos_token_id"], 0);
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["architectures"], json::array({"GPT2LMHeadModel"}));
  expect_same_tensors(out.string(), fixture("gpt2_untied_v300"));
}

TEST_F(HfConvertErrorTest, UnprefixedNamesAndAttentionBuffersAreAccepted) {
  HfModel want = hf_to_loom(dir_.string());
  edit_tensors([](std::map<std::string, Tensor>& t) {
    std::map<std::string, Tensor> hub;  // the hub's gpt2 layout: GPT2Model names + mask buffers
    for (auto& [k, v] : t) hub[k.substr(std::string("transformer.").size())] = v;
    hub["h.0.attn.bias"] = Tensor::ones({1, 1, 16, 16});
    hub["h.1.attn.masked_bias"] = Tensor::scalar(-1e4);
    t = hub;
  });
  HfModel m = hf_to_loom(dir_.string());
  for (const auto& [name, v] : want.params)
    EXPECT_EQ(bytes_of(m.params.at(name)), bytes_of(v)) << name;
}

TEST_F(HfConvertErrorTest, ShardedExportRoundTrips) {
  HfModel m = hf_to_loom(dir_.string());
  HfExportOptions o;
  o.max_shard_bytes = 16 * 1024;
  fs::path out = dir_ / "sharded";
  save_hf_model(out.string(), m.params, m.config, m.vocab_size, m.tokenizer, m.hf_config_json, o);
  EXPECT_TRUE(fs::exists(out / kSafetensorsIndexFile));
  expect_same_tensors(out.string(), fixture("gpt2_tied_v61"));
}

TEST_F(HfConvertErrorTest, UnsupportedConfigFieldsNameTheField) {
  edit_config([](json& j) { j["layer_norm_epsilon"] = 1e-6; });
  expect_error({"config.json", "layer_norm_epsilon", "1e-05"});
  edit_config([](json& j) {
    j["layer_norm_epsilon"] = 1e-5;
    j["activation_function"] = "gelu";
  });
  expect_error({"config.json", "activation_function", "gelu_new"});
  edit_config([](json& j) {
    j["activation_function"] = "gelu_new";
    j["n_inner"] = 100;
  });
  expect_error({"config.json", "n_inner"});
  edit_config([](json& j) {
    j["n_inner"] = nullptr;
    j.erase("n_layer");
  });
  expect_error({"config.json", "n_layer"});
  edit_config([](json& j) {
    j["n_layer"] = 2;
    j["model_type"] = "llama";
  });
  expect_error({"config.json", "model_type"});
  // Sizes beyond Loom's bounds are named before any shape is formed from them (2^61: drills)
  edit_config([](json& j) {
    j.erase("model_type");
    j["n_embd"] = int64_t(1) << 61;
  });
  expect_error({"config.json", "\"n_embd\"", "131072", "model.n_embd"});
}

TEST_F(HfConvertErrorTest, MissingExtraOrMisshapedTensorsAreNamed) {
  edit_tensors([](auto& t) { t.erase("transformer.h.1.mlp.c_fc.bias"); });
  expect_error({"h.1.mlp.c_fc.bias", "missing"});
  fs::remove_all(dir_);
  fs::copy(fixture("gpt2_tied_v61"), dir_);
  edit_tensors([](auto& t) { t["transformer.h.0.attn.c_proj.weight"] = Tensor::zeros({32, 31}); });
  expect_error({"h.0.attn.c_proj.weight", "(32, 32)", "(32, 31)"});
  fs::remove_all(dir_);
  fs::copy(fixture("gpt2_tied_v61"), dir_);
  edit_tensors([](auto& t) { t["transformer.h.2.ln_1.weight"] = Tensor::ones({32}); });
  expect_error({"unexpected tensor", "h.2.ln_1.weight"});
  fs::remove_all(dir_);
  fs::copy(fixture("gpt2_tied_v61"), dir_);
  edit_config([](json& j) { j["tie_word_embeddings"] = false; });
  expect_error({"lm_head.weight", "missing"});
}

TEST_F(HfConvertErrorTest, TiedHeadThatDiffersFromTheEmbeddingFails) {
  edit_tensors([](auto& t) { t["lm_head.weight"] = Tensor::zeros({61, 32}); });
  expect_error({"tie_word_embeddings", "lm_head.weight"});
}

TEST_F(HfConvertErrorTest, ExportFromSomethingThatIsNotACheckpointFails) {
  EXPECT_THROW(convert_loom_to_hf((dir_ / "nothing").string(), (dir_ / "out").string()),
               CheckpointError);
}

}  // namespace
}  // namespace loom::io
