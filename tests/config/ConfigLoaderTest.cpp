// Config loading (TESTPLAN U7): text format errors carry file:line:column and "did you mean"
// hints, wrong types and enum values are rejected, JSON is accepted, `--set` overrides work and
// fail with the path and the expected type, and bad LOOM_* environment values throw ConfigError.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/util/Check.h"
#include "core/util/Env.h"
#include "config/ConfigLoader.h"
#include "config/ConfigOverride.h"

namespace loom::config {
namespace {

// Runs `fn`, expects a ConfigError, returns its message.
template <class Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ConfigError";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "missing \"" << (needle) << "\" in:\n"                    \
      << (haystack)

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigLoaderTest, UnknownFieldReportsFileLineColumnAndSuggestion) {
  std::string path =
      write_temp("loom_cfg_unknown.pbtxt", "max_steps: 10\nmodel {\n  n_layers: 4\n}\n");
  std::string msg = config_error([&] { load_file(path); });
  EXPECT_CONTAINS(msg, path + ":3:3:");  // line 3, column 3: where "n_layers" starts
  EXPECT_CONTAINS(msg, "n_layers");
  EXPECT_CONTAINS(msg, "did you mean \"n_layer\"");
  EXPECT_CONTAINS(msg, "valid fields: preset, n_layer, n_head");
  std::filesystem::remove(path);
}

TEST(ConfigLoaderTest, UnknownTopLevelFieldWithoutCloseMatchListsValidFields) {
  std::string msg = config_error([] { parse_text("max_steps: 1\nbanana: 3\n", "x.pbtxt"); });
  EXPECT_CONTAINS(msg, "x.pbtxt:2:1:");
  EXPECT_CONTAINS(msg, "banana");
  EXPECT_CONTAINS(msg, "valid fields: name, stage");
  EXPECT_EQ(msg.find("did you mean"), std::string::npos);
}

TEST(ConfigLoaderTest, WrongTypeIsAnError) {
  std::string msg = config_error([] { parse_text("model {\n n_layer: \"four\"\n}", "t.pbtxt"); });
  EXPECT_CONTAINS(msg, "t.pbtxt:2:");
  EXPECT_CONTAINS(msg, "integer");
  msg = config_error([] { parse_text("model { bias: 7 }", "t.pbtxt"); });
  EXPECT_CONTAINS(msg, "t.pbtxt:1:15:");  // the value 7 is not a bool
  EXPECT_CONTAINS(msg, "(7)");
  msg = config_error([] { parse_text("optimizer { lr: \"fast\" }", "t.pbtxt"); });
  EXPECT_CONTAINS(msg, "t.pbtxt:1:");
  EXPECT_CONTAINS(msg, "fast");
}

TEST(ConfigLoaderTest, UnknownEnumValueListsAllowedValues) {
  std::string msg = config_error([] { parse_text("dtype: F64", "e.pbtxt"); });
  EXPECT_CONTAINS(msg, "e.pbtxt:1:");
  EXPECT_CONTAINS(msg, "F64");
  EXPECT_CONTAINS(msg, "allowed: F32, BF16, F16");
}

TEST(ConfigLoaderTest, FieldGivenTwiceIsAnError) {
  std::string msg = config_error([] { parse_text("max_steps: 1\nmax_steps: 2\n", "d.pbtxt"); });
  EXPECT_CONTAINS(msg, "d.pbtxt:2:");
  EXPECT_CONTAINS(msg, "max_steps");
}

TEST(ConfigLoaderTest, MissingFileNamesThePath) {
  std::string msg = config_error([] { load_file("/nonexistent/dir/run.pbtxt"); });
  EXPECT_CONTAINS(msg, "/nonexistent/dir/run.pbtxt");
}

TEST(ConfigLoaderTest, JsonIsAcceptedWithProtoAndCamelCaseNames) {
  RunConfig j = parse_json(R"({"max_steps": 7, "model": {"n_layer": 3, "nEmbd": 48},
                               "optimizer": {"type": "SGD", "lr": 0.5}, "dtype": "BF16"})");
  EXPECT_EQ(j.max_steps(), 7);
  EXPECT_EQ(j.model().n_layer(), 3);
  EXPECT_EQ(j.model().n_embd(), 48);
  EXPECT_EQ(j.optimizer().type(), OptimizerConfig::SGD);
  EXPECT_EQ(j.optimizer().lr(), 0.5);
  EXPECT_EQ(j.dtype(), RunConfig::BF16);
  RunConfig t = parse_text(
      "max_steps: 7 model { n_layer: 3 n_embd: 48 } optimizer { type: SGD lr: 0.5 } dtype: BF16");
  EXPECT_EQ(to_text(j), to_text(t));
  EXPECT_EQ(config_hash(j), config_hash(t));

  std::string path = write_temp("loom_cfg.json", R"({"max_steps": 3})");
  EXPECT_EQ(load_file(path).max_steps(), 3);
  std::filesystem::remove(path);
}

TEST(ConfigLoaderTest, JsonUnknownFieldAndWrongTypeAreErrors) {
  std::string msg = config_error([] { parse_json(R"({"model": {"n_layers": 3}})", "c.json"); });
  EXPECT_CONTAINS(msg, "c.json");
  EXPECT_CONTAINS(msg, "n_layers");
  msg = config_error([] { parse_json(R"({"max_steps": "many"})", "c.json"); });
  EXPECT_CONTAINS(msg, "c.json");
  msg = config_error([] { parse_json("{not json", "c.json"); });
  EXPECT_CONTAINS(msg, "c.json");
}

TEST(ConfigLoaderTest, SetOverridesEveryScalarKind) {
  RunConfig cfg;
  apply_overrides(cfg, {"max_steps=123", "optimizer.lr=3e-4", "model.bias=false",
                        "schedule.decay=linear", "dtype=BF16", "data.train_path=\"a b.h5\"",
                        "ppo.rollout.top_k=40", "seed=18446744073709551615", "name=x=y"});
  EXPECT_EQ(cfg.max_steps(), 123);
  EXPECT_EQ(cfg.optimizer().lr(), 3e-4);
  EXPECT_TRUE(cfg.model().has_bias());
  EXPECT_FALSE(cfg.model().bias());
  EXPECT_EQ(cfg.schedule().decay(), LrScheduleConfig::LINEAR);
  EXPECT_EQ(cfg.dtype(), RunConfig::BF16);
  EXPECT_EQ(cfg.data().train_path(), "a b.h5");
  EXPECT_EQ(cfg.ppo().rollout().top_k(), 40);
  EXPECT_EQ(cfg.seed(), 18446744073709551615ull);
  EXPECT_EQ(cfg.name(), "x=y");        // only the first '=' splits path from value
  apply_override(cfg, "max_steps=5");  // later overrides win
  EXPECT_EQ(cfg.max_steps(), 5);
}

TEST(ConfigLoaderTest, SetReplacesAListOfStringsFromCommaSeparatedValues) {
  RunConfig cfg;
  apply_override(cfg, "lora.target_modules=attn.q,attn.kv,proj");
  ASSERT_EQ(cfg.lora().target_modules_size(), 3);
  EXPECT_EQ(cfg.lora().target_modules(0), "attn.q");
  EXPECT_EQ(cfg.lora().target_modules(2), "proj");
  apply_override(cfg, "lora.target_modules=mlp.fc");  // replaces, never appends
  ASSERT_EQ(cfg.lora().target_modules_size(), 1);
  EXPECT_EQ(cfg.lora().target_modules(0), "mlp.fc");
  const std::string msg = config_error([&] { apply_override(cfg, "lora.target_modules=a,,b"); });
  EXPECT_NE(msg.find("comma-separated non-empty values"), std::string::npos) << msg;
}

TEST(ConfigLoaderTest, SetBadPathListsValidFieldsAtThatLevel) {
  RunConfig cfg;
  std::string msg = config_error([&] { apply_override(cfg, "optimizer.learning_rate=1"); });
  EXPECT_CONTAINS(msg, "optimizer.learning_rate");
  EXPECT_CONTAINS(msg, "no field \"learning_rate\" at optimizer");
  EXPECT_CONTAINS(msg, "valid fields: type, lr, beta1");
  msg = config_error([&] { apply_override(cfg, "modle.n_layer=1"); });
  EXPECT_CONTAINS(msg, "did you mean \"model\"");
  msg = config_error([&] { apply_override(cfg, "model=3"); });
  EXPECT_CONTAINS(msg, "model is a message");
  EXPECT_CONTAINS(msg, "n_layer");
  msg = config_error([&] { apply_override(cfg, "model.n_layer.x=3"); });
  EXPECT_CONTAINS(msg, "model.n_layer.x");
  EXPECT_CONTAINS(msg, "not a message");
  msg = config_error([&] { apply_override(cfg, "max_steps"); });
  EXPECT_CONTAINS(msg, "expected path=value");
}

TEST(ConfigLoaderTest, SetBadValueNamesTheExpectedType) {
  RunConfig cfg;
  std::string msg = config_error([&] { apply_override(cfg, "model.n_layer=abc"); });
  EXPECT_CONTAINS(msg, "model.n_layer expected an integer, got \"abc\"");
  msg = config_error([&] { apply_override(cfg, "model.n_layer=1.5"); });
  EXPECT_CONTAINS(msg, "expected an integer");
  msg = config_error([&] { apply_override(cfg, "model.n_layer=99999999999999999999"); });
  EXPECT_CONTAINS(msg, "expected an integer");
  msg = config_error([&] { apply_override(cfg, "seed=-1"); });
  EXPECT_CONTAINS(msg, "seed expected a non-negative integer, got \"-1\"");
  msg = config_error([&] { apply_override(cfg, "optimizer.lr=fast"); });
  EXPECT_CONTAINS(msg, "optimizer.lr expected a number, got \"fast\"");
  msg = config_error([&] { apply_override(cfg, "model.bias=yes"); });
  EXPECT_CONTAINS(msg, "model.bias expected true or false, got \"yes\"");
  msg = config_error([&] { apply_override(cfg, "schedule.decay=exponential"); });
  EXPECT_CONTAINS(msg, "expected one of COSINE, LINEAR, CONSTANT, got \"exponential\"");
  msg = config_error([&] { apply_override(cfg, "dtype=dtype_unset"); });
  EXPECT_CONTAINS(msg, "expected one of F32, BF16, F16");
  EXPECT_FALSE(cfg.has_dtype());  // failed overrides leave the field untouched
}

// LOOM_NUM_THREADS is read with get_int(kNumThreads, 0, 0, 4096) in core/backend/cpu/CpuMemory.cpp.
TEST(ConfigLoaderTest, BadEnvironmentValuesThrowConfigErrorNamingTheVariable) {
  for (const char* bad : {"abc", "-1", "2147483647", "12abc", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    ASSERT_EQ(setenv(env::kNumThreads, bad, 1), 0);
    std::string msg = config_error([] { env::get_int(env::kNumThreads, 0, 0, 4096); });
    EXPECT_CONTAINS(msg, "LOOM_NUM_THREADS");
    EXPECT_CONTAINS(msg, bad);
  }
  ASSERT_EQ(setenv(env::kNumThreads, "8", 1), 0);
  EXPECT_EQ(env::get_int(env::kNumThreads, 0, 0, 4096), 8);
  ASSERT_EQ(unsetenv(env::kNumThreads), 0);
  EXPECT_EQ(env::get_int(env::kNumThreads, 3, 0, 4096), 3);
}

}  // namespace
}  // namespace loom::config
