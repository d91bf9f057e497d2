// The command line on CLI11 (launch/cli/Cli.h, Verb.h): values, repeatable flags, booleans and
// positionals parse; numbers are range-checked base-10 (no wrap, no octal, no trailing junk);
// every mistake is a ConfigError naming the verb, the flag and the expected form; --help exits 0.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/util/Check.h"
#include "launch/cli/Cli.h"

namespace loom::cli {
namespace {

// Runs `words` through a Cli with one verb "try" (flags --n, --x, --ids, --set, --on and up to
// one positional) and one group "grp" with verb "sub"; `check` reads the parsed verb.
int run_cli(std::vector<std::string> words, const std::function<void(const Verb&)>& check = {}) {
  Cli cli([] { return std::string("loom test"); });
  cli.verb(cli.root(), "try", "a verb",
           [&](const Verb& v) {
             if (check) check(v);
             return 7;
           })
      .positionals("FILE", "one file")
      .value("n", "N", "an integer", "-n")
      .value("x", "X", "a number")
      .value("ids", "ID,...", "integers")
      .list("set", "F=V", "overrides")
      .boolean("on", "a switch");
  CLI::App& grp = cli.group(cli.root(), "grp", "a group");
  cli.verb(grp, "sub", "a grouped verb", [](const Verb&) { return 3; });
  words.insert(words.begin(), "loom");
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  return cli.run(int(argv.size()), argv.data());
}

// The ConfigError message of run_cli(words), or "" when it does not throw one.
std::string config_error(const std::vector<std::string>& words,
                         const std::function<void(const Verb&)>& check = {}) {
  try {
    run_cli(words, check);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::vector<std::string>& words, const std::vector<std::string>& parts,
                  const std::function<void(const Verb&)>& check = {}) {
  const std::string m = config_error(words, check);
  ASSERT_FALSE(m.empty()) << "no ConfigError for " << ::testing::PrintToString(words);
  for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << p << "\n" << m;
}

TEST(CliTest, ValuesListsBooleansAndPositionalsParse) {
  bool checked = false;
  EXPECT_EQ(run_cli({"try", "f.txt", "--n", "-5", "--x=2.5", "--set", "a=1", "--set", "b=2", "--on",
                     "--ids", "1,2,3"},
                    [&](const Verb& v) {
                      EXPECT_EQ(v.positional(), std::vector<std::string>{"f.txt"});
                      EXPECT_EQ(v.get_int("n", 0, -10, 10), -5);
                      EXPECT_EQ(v.get_double("x", 0.0, 0.0, 3.0), 2.5);
                      EXPECT_EQ(v.list("set"), (std::vector<std::string>{"a=1", "b=2"}));
                      EXPECT_TRUE(v.flag("on"));
                      EXPECT_EQ(v.get_int_list("ids", 0, 9), (std::vector<int64_t>{1, 2, 3}));
                      checked = true;
                    }),
            7);
  EXPECT_TRUE(checked);
  EXPECT_EQ(run_cli({"grp", "sub"}), 3);
  run_cli({"try", "-n", "4", "--on=false"}, [](const Verb& v) {
    EXPECT_EQ(v.get_int("n", 0, 0, 9), 4);  // the short alias
    EXPECT_FALSE(v.flag("on"));
    EXPECT_FALSE(v.has("x"));
    EXPECT_EQ(v.get_double("x", 1.5, 0.0, 3.0), 1.5);  // the fallback
  });
}

TEST(CliTest, HelpAndVersionExitZero) {
  EXPECT_EQ(run_cli({"--help"}), 0);
  EXPECT_EQ(run_cli({"-h"}), 0);
  EXPECT_EQ(run_cli({"try", "--help"}), 0);  // the verb's body does not run
  EXPECT_EQ(run_cli({"try", "-h", "--bogus"}), 0);
  EXPECT_EQ(run_cli({"grp", "sub", "--help"}), 0);
  EXPECT_EQ(run_cli({"grp", "--help"}), 0);
  EXPECT_EQ(run_cli({"--version"}), 0);
  // `loom` alone: the usage, then a ConfigError (exit 2, a command-line error as README's table
  // says; it was 1, found by the drills).
  expect_error({}, {"loom: expected a command, one of try, grp"});
}

TEST(CliTest, NumbersAreRangeCheckedAndNeverWrap) {
  auto get_n = [](int64_t lo, int64_t hi) {
    return [=](const Verb& v) { v.get_int("n", 0, lo, hi); };
  };
  // 2^32 + 1 would wrap to 1 in an int32_t.
  expect_error({"try", "--n", "4294967297"}, {"loom try: --n", "[0, 2147483647]", "4294967297"},
               get_n(0, 2147483647));
  expect_error({"try", "--n", "99999999999999999999"}, {"--n", "99999999999999999999"},
               get_n(0, INT64_MAX));
  expect_error({"try", "--n", "12abc"}, {"--n expects an integer", "12abc"}, get_n(0, 100));
  expect_error({"try", "--n", "0x10"}, {"--n", "0x10"}, get_n(0, 100));
  expect_error({"try", "--n", "-1"}, {"--n", "[0, 100]", "-1"}, get_n(0, 100));
  expect_error({"try", "--n", ""}, {"--n"}, get_n(0, 100));
  run_cli({"try", "--n", "010"}, [](const Verb& v) { EXPECT_EQ(v.get_int("n", 0, 0, 99), 10); });
  auto get_x = [](const Verb& v) { v.get_double("x", 0.0, 0.0, 1.0); };
  expect_error({"try", "--x", "inf"}, {"--x expects a number in [0, 1]", "inf"}, get_x);
  expect_error({"try", "--x", "nan"}, {"--x", "nan"}, get_x);
  expect_error({"try", "--x", "1.5"}, {"--x", "1.5"}, get_x);
  expect_error({"try", "--x", "0.5x"}, {"--x", "0.5x"}, get_x);
  auto get_ids = [](const Verb& v) { v.get_int_list("ids", 0, 2147483647); };
  expect_error({"try", "--ids", "1,4294967297"}, {"--ids", "[0, 2147483647]", "4294967297"},
               get_ids);
  expect_error({"try", "--ids", "1,,2"}, {"--ids", "bad item \"\""}, get_ids);
}

TEST(CliTest, MistakesAreConfigErrorsNamingVerbAndFlag) {
  expect_error({"fly"}, {"unknown command \"fly\"", "try", "grp"});
  expect_error({"grp", "fly"}, {"loom grp: unknown command \"fly\"", "sub"});
  expect_error({"grp"}, {"loom grp: expected a command", "sub"});
  expect_error({"try", "--bogus", "1"}, {"loom try: unknown flag --bogus", "--n", "--set"});
  expect_error({"try", "f", "--bogus=1"}, {"unknown flag --bogus;"});
  expect_error({"try", "--n"}, {"loom try: --n expects a value (N), got none"});
  expect_error({"try", "--n", "1", "--n", "2"}, {"--n given 2 times; expected at most once"});
  expect_error({"try", "a", "b"}, {"loom try: expected at most 1 FILE", "got 2"});
  expect_error({"grp", "sub", "extra"}, {"loom grp sub: unexpected argument \"extra\""});
  expect_error({"try"}, {"loom try: --x is required (--x X)"},
               [](const Verb& v) { v.require("x"); });
  expect_error({"--bogus"}, {"loom: ", "--bogus"});
}

// mpirun spells the rank count -np; a respelling turns it into -n for one verb only.
TEST(CliTest, RespellingAppliesToItsVerbOnly) {
  Cli cli([] { return std::string("v"); });
  int64_t n = 0;
  Verb& v = cli.verb(cli.root(), "launch", "l", [&](const Verb& a) {
    n = a.get_int("n", 0, 1, 64);
    return 0;
  });
  v.value("n", "N", "ranks", "-n");
  cli.respell(v, "-np", "-n");
  std::vector<std::string> words = {"loom", "launch", "-np", "4"};
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  EXPECT_EQ(cli.run(int(argv.size()), argv.data()), 0);
  EXPECT_EQ(n, 4);
}

}  // namespace
}  // namespace loom::cli
