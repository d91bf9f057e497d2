// HfReader (issue 11 item 2): a rank's piece of a Loom tensor read from Hugging Face safetensors
// byte ranges (Conv1D weights transposed, fused c_attn cut into stacked qkv rows, sharded files,
// bf16 storage) equals the slice of the whole conversion bitwise, for every piece kind of the
// fixtures made by tests/golden/gen_hf_gpt2.py; on a GPT-2-width model a TP=2 rank reads exactly
// its piece's bytes and allocates at most its piece plus one bounded chunk, never the whole HF
// tensor. The Llama-family fixtures (gen_llama_family.py) likewise, their separate q/k/v and
// gate/up tensors stacked into Loom's fused ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/backend/Backend.h"
#include "core/random/Generator.h"
#include "io/HfReader.h"
#include "models/HfLlama.h"
#include "tests/io/PieceTestUtil.h"
#include "tests/support/Golden.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

using test::expect_bitwise;
using test::pieces_of;

std::string fixture(const std::string& name) { return testing::golden_dir() + "hf/" + name; }

// The whole Loom tensors of an HF directory, made independently of HfReader: every HF tensor
// read whole, transposed where the table says so, converted to f32.
std::map<std::string, Tensor> whole_conversion(const std::string& dir, const HfReader& r) {
  std::map<std::string, Tensor> hf = load_safetensors_dir(dir), out;
  for (const detail::HfParam& p : r.params()) {
    auto it = hf.find("transformer." + p.hf);
    if (it == hf.end()) it = hf.find(p.hf);
    EXPECT_NE(it, hf.end()) << p.hf;
    Tensor t = p.transposed ? it->second.t() : it->second;
    out[p.loom] = t.to(DType::F32).contiguous().clone();
  }
  return out;
}

void expect_every_piece(const std::string& dir) {
  HfReader r(dir);
  const std::map<std::string, Tensor> whole = whole_conversion(dir, r);
  for (const auto& [name, t] : whole) {
    ASSERT_EQ(r.info(name)->shape, t.shape()) << name;
    for (int size : {1, 2, 3, 4})
      for (const ShardSpec& s : pieces_of(t.shape(), size))
        expect_bitwise(r.read(name, s), extract_shard(t, s), dir + " " + name + " " + s.str());
  }
  const HfModel m = hf_to_loom(dir);  // the whole conversion is HfReader's whole pieces
  for (const auto& [name, t] : whole) expect_bitwise(m.params.at(name), t, name);
}

class HfReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("loom_hfreader_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(HfReaderTest, EveryPieceOfEveryFixtureEqualsTheSliceOfTheWholeConversion) {
  for (const char* name : {"gpt2_tied_v61", "gpt2_untied_v300", "gpt2_sharded_v301"})
    expect_every_piece(fixture(name));
}

TEST_F(HfReaderTest, Bf16TensorsAreConvertedPieceByPiece) {
  fs::copy(fixture("gpt2_untied_v300"), dir_, fs::copy_options::recursive);
  std::map<std::string, Tensor> t = load_safetensors_dir(dir_.string());
  for (auto& [k, v] : t) v = v.to(DType::BF16);  // a copy: the file is replaced below
  save_safetensors((dir_ / kSafetensorsFile).string(), t);
  expect_every_piece(dir_.string());
}

// GPT-2's width (C = 768), one layer: c_fc is a (768, 3072) Conv1D weight of 9 MiB. A TP=2 rank's
// pieces of the MLP and attention weights are read as exactly their bytes; the tensor memory the
// read holds at once is the piece plus one chunk (at most 4 MiB, HfReader.cpp kChunkBytes).
TEST_F(HfReaderTest, ATp2RankReadsItsPieceInBoundedChunks) {
  models::GPTConfig c;
  c.n_layer = 1;
  c.n_head = 12;
  c.n_embd = 768;
  c.vocab_size = 64;
  c.block_size = 16;
  Generator g(3);
  std::map<std::string, Tensor> hf;
  for (const detail::HfParam& p : detail::hf_params(c, c.vocab_size))
    hf["transformer." + p.hf] =
        Tensor::randn(p.transposed ? Shape{p.shape[1], p.shape[0]} : p.shape, g);
  save_safetensors((dir_ / kSafetensorsFile).string(), hf);
  std::ofstream(dir_ / "config.json") << R"({"model_type": "gpt2", "n_layer": 1, "n_head": 12,
      "n_embd": 768, "vocab_size": 64, "n_positions": 16})";
  HfReader r(dir_.string());
  const std::map<std::string, Tensor> whole = whole_conversion(dir_.string(), r);
  constexpr int64_t kChunk = int64_t(4) << 20;
  Backend& be = backend_for(Device::cpu());
  const std::pair<const char*, ShardSpec> cases[] = {
      {"blocks.0.mlp.fc.weight", ShardSpec::rows({3072, 768}, 1, 1, 2)},      // column-parallel
      {"blocks.0.attn.qkv.weight", ShardSpec::rows({2304, 768}, 3, 0, 2)},    // stacked q, k, v
      {"blocks.0.mlp.proj.weight", ShardSpec::split({768, 3072}, 1, 1, 2)}};  // row-parallel
  for (const auto& [name, s] : cases) {
    const int64_t piece_bytes = shape_numel(s.local_shape()) * 4;
    const uint64_t before = r.bytes_read();
    const size_t live = be.allocated_bytes(0);
    be.reset_peak(0);
    Tensor got = r.read(name, s);
    const int64_t peak_extra = int64_t(be.peak_allocated_bytes(0)) - int64_t(live);
    EXPECT_EQ(int64_t(r.bytes_read() - before), piece_bytes) << name;
    EXPECT_LE(peak_extra, piece_bytes + kChunk) << name;
    EXPECT_LT(peak_extra, int64_t(whole.at(name).nbytes())) << name;
    expect_bitwise(got, extract_shard(whole.at(name), s), name);
  }
}

// The Llama-family fixtures of tests/golden/gen_llama_family.py (GQA, MQA, q/k/v biases, tied
// and untied): every piece, including the 2-block stacked [k; v] and [gate; up] pieces a TP rank
// holds, equals the slice of models::hf_llama_to_loom's whole-tensor mapping bitwise.
TEST_F(HfReaderTest, EveryPieceOfTheLlamaFamilyFixturesEqualsTheWholeMapping) {
  for (const char* name : {"llama_gqa_llama3_tied", "llama_mha_linear_untied",
                           "mistral_gqa_untied", "qwen2_mqa_bias_tied"}) {
    const std::string dir = testing::golden_dir() + "hf_llama/" + name;
    HfReader r(dir);
    const std::map<std::string, Tensor> whole =
        models::hf_llama_to_loom(load_safetensors_dir(dir), r.config());
    ASSERT_EQ(r.params().size(), whole.size()) << name;
    for (const auto& [pname, t] : whole) {
      ASSERT_EQ(r.info(pname)->shape, t.shape()) << pname;
      for (int size : {1, 2, 4}) {
        std::vector<ShardSpec> pieces = pieces_of(t.shape(), size);
        for (int rank = 0; rank < size && t.size(0) % (2 * size) == 0; ++rank)
          pieces.push_back(ShardSpec::rows(t.shape(), 2, rank, size));  // [k; v], [gate; up]
        for (const ShardSpec& s : pieces)
          expect_bitwise(r.read(pname, s), extract_shard(t, s), dir + " " + pname + " " + s.str());
      }
    }
  }
}

TEST_F(HfReaderTest, AnUnsupportedArchitectureIsNamedWithTheSupportedOnes) {
  std::ofstream(dir_ / "config.json") << R"({"architectures": ["GPTJForCausalLM"]})";
  try {
    HfReader r(dir_.string());
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    for (const char* want : {"GPTJForCausalLM", "GPT2LMHeadModel", "LlamaForCausalLM",
                             "Qwen2ForCausalLM", "MistralForCausalLM", "config.json"})
      EXPECT_NE(m.find(want), std::string::npos) << want << " in " << m;
  }
}

TEST_F(HfReaderTest, AWrongPieceNamesTheDirectoryAndTheTensor) {
  HfReader r(fixture("gpt2_tied_v61"));
  EXPECT_FALSE(r.info("lm_head.weight").has_value());  // tied: no head of its own
  try {
    r.read("wte.weight", ShardSpec::whole({64, 32}));
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tensor 'wte.weight' has shape (61, 32)"), std::string::npos) << m;
    EXPECT_NE(m.find("gpt2_tied_v61"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace loom::io
