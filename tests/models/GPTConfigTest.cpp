// GPTConfig presets, validation and parameter counts (closed form vs the built model).
#include <gtest/gtest.h>

#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "models/GPT.h"
#include "models/GPTConfig.h"

namespace loom::models {
namespace {

TEST(GPTConfigTest, PresetsHaveTheGpt2Shapes) {
  struct Want {
    const char* name;
    int64_t n_layer, n_head, n_embd;
  };
  for (Want w : {Want{"gpt2-124m", 12, 12, 768}, Want{"gpt2-350m", 24, 16, 1024},
                 Want{"gpt2-774m", 36, 20, 1280}, Want{"gpt2-1.5b", 48, 25, 1600}}) {
    GPTConfig c = GPTConfig::preset(w.name);
    EXPECT_EQ(c.n_layer, w.n_layer) << w.name;
    EXPECT_EQ(c.n_head, w.n_head) << w.name;
    EXPECT_EQ(c.n_embd, w.n_embd) << w.name;
    EXPECT_EQ(c.vocab_size, 50257) << w.name;
    EXPECT_EQ(c.block_size, 1024) << w.name;
    EXPECT_TRUE(c.tie_embeddings) << w.name;
    EXPECT_NO_THROW(c.validate()) << w.name;
  }
}

TEST(GPTConfigTest, UnknownPresetListsTheKnownOnes) {
  try {
    GPTConfig::preset("gpt2-xxl");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("gpt2-xxl"), std::string::npos) << msg;
    for (const std::string& n : GPTConfig::preset_names())
      EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

TEST(GPTConfigTest, ValidateRejectsHeadsThatDoNotDivideWidth) {
  GPTConfig c;
  c.n_embd = 100;
  c.n_head = 3;
  EXPECT_THROW(c.validate(), ValueError);
  c.n_head = 4;
  c.dropout = 1.0;
  EXPECT_THROW(c.validate(), ValueError);
}

TEST(GPTConfigTest, PresetParameterCountsMatchGpt2) {
  // The published GPT-2 sizes: nanoGPT prints 123.65M / 353.77M / 772.72M / 1555.97M parameters
  // for these (it leaves out wpe, block_size * n_embd); adding wpe gives the numbers below.
  EXPECT_EQ(GPTConfig::preset("gpt2-124m").num_parameters(), 124439808);
  EXPECT_EQ(GPTConfig::preset("gpt2-350m").num_parameters(), 354823168);
  EXPECT_EQ(GPTConfig::preset("gpt2-774m").num_parameters(), 774030080);
  EXPECT_EQ(GPTConfig::preset("gpt2-1.5b").num_parameters(), 1557611200);
  GPTConfig untied = GPTConfig::preset("gpt2-124m");
  untied.tie_embeddings = false;
  EXPECT_EQ(untied.num_parameters(), 124439808 + 50257 * 768);
}

TEST(GPTConfigTest, BuiltModelCountMatchesClosedForm) {
  for (bool tie : {true, false}) {
    for (bool bias : {true, false}) {
      GPTConfig c;
      c.n_layer = 3;
      c.n_head = 2;
      c.n_embd = 16;
      c.vocab_size = 37;
      c.block_size = 8;
      c.tie_embeddings = tie;
      c.bias = bias;
      GPT model(c);
      model.init_weights(1);
      EXPECT_EQ(model.num_parameters(), c.num_parameters()) << "tie " << tie << " bias " << bias;
    }
  }
}

}  // namespace
}  // namespace loom::models
