// Every exception maps to a documented exit code and a labelled message (launch/cli/ErrorReport.h):
// Loom's classes to 1-6, and library exceptions (nlohmann JSON, std::stoll, std::bad_alloc,
// std::filesystem) to a message that says what happened instead of the library's raw text.
#include <gtest/gtest.h>

#include <filesystem>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "launch/cli/ErrorReport.h"

namespace loom::cli {
namespace {

template <class F>
ErrorReport report_of(F&& throw_it) {
  try {
    throw_it();
  } catch (...) {
    return report_current_exception();
  }
  ADD_FAILURE() << "nothing thrown";
  return {};
}

void expect_report(const ErrorReport& r, int code, const std::vector<std::string>& parts,
                   const std::vector<std::string>& absent = {}) {
  EXPECT_EQ(r.exit_code, code) << r.message;
  for (const std::string& p : parts)
    EXPECT_NE(r.message.find(p), std::string::npos) << p << "\n" << r.message;
  for (const std::string& p : absent)
    EXPECT_EQ(r.message.find(p), std::string::npos) << p << "\n" << r.message;
}

TEST(ErrorReportTest, LoomClassesMapToTheirExitCodes) {
  expect_report(report_of([] { throw ConfigError("c"); }), 2, {"c"});
  expect_report(report_of([] { throw CheckpointError("k"); }), 3, {"k"});
  expect_report(report_of([] { throw CommTimeout("t"); }), 4, {"t"});
  expect_report(report_of([] { throw OutOfMemoryError("o"); }), 5, {"o"});
  expect_report(report_of([] { throw NonFiniteError("n"); }), 6, {"n"});
  expect_report(report_of([] { throw DataError("d"); }), 1, {"d"});
  expect_report(report_of([] { throw ValueError("v"); }), 1, {"v"});
  expect_report(report_of([] { throw CommError("m"); }), 1, {"m"});
  expect_report(report_of([] { throw InternalError("i"); }), 1, {"internal error", "i"});
}

TEST(ErrorReportTest, JsonErrorsAreLabelledWithoutTheRawPrefix) {
  // The error behind `[json.exception.type_error.302] type must be string, but is number`.
  ErrorReport r = report_of([] { nlohmann::json(5).get<std::string>(); });
  expect_report(r, 1, {"wrong type", "type must be string, but is number"}, {"[json.exception"});
  r = report_of([] { nlohmann::json j = nlohmann::json::parse("{oops"); });
  expect_report(r, 1, {"malformed JSON", "parse error"}, {"[json.exception"});
  r = report_of([] { (void)nlohmann::json::object().at("step"); });
  expect_report(r, 1, {"missing or out of range", "step"}, {"[json.exception"});
}

// The drills (scripts/drills.sh) found the id inside Loom's own messages: the JSONL reader, the
// tokenizer, manifest, safetensors and HF config.json readers append e.what() to their text.
TEST(ErrorReportTest, JsonIdsInsideLoomMessagesAreRemoved) {
  std::string what;
  try {
    nlohmann::json j = nlohmann::json::parse("{\"text\": \"a\"");
  } catch (const nlohmann::json::parse_error& e) {
    what = e.what();
  }
  ASSERT_EQ(what.rfind("[json.exception.parse_error.101] ", 0), 0u) << what;
  const ErrorReport r = report_of([&] {
    throw DataError("documents: d.jsonl line 2: not valid JSON: " + what);
  });
  expect_report(r, 1, {"documents: d.jsonl line 2: not valid JSON: parse error at line 1"},
                {"[json.exception"});
  const ErrorReport c = report_of([&] {
    throw CheckpointError("manifest m.json is not valid JSON (" + what + "); also (" + what + ")");
  });
  expect_report(c, 3, {"m.json is not valid JSON (parse error", "also (parse error"},
                {"[json.exception"});
}

TEST(ErrorReportTest, StollAndBadAllocAreExplained) {
  ErrorReport r = report_of([] { (void)std::stoll("abc"); });
  expect_report(r, 1, {"could not be parsed", "stoll"});
  EXPECT_NE(r.message, "stoll");
  r = report_of([] { (void)std::stoll("99999999999999999999"); });
  expect_report(r, 1, {"out of range", "stoll"});
  expect_report(report_of([] { throw std::bad_alloc(); }), 5, {"out of memory", "hint"});
  expect_report(report_of([] {
                  std::vector<double> v;
                  v.reserve(v.max_size() + 1);
                }),
                5, {"out of memory"});
}

TEST(ErrorReportTest, FilesystemErrorsNameThePaths) {
  ErrorReport r = report_of([] { std::filesystem::create_directories("/dev/null/loom_x"); });
  expect_report(r, 1, {"file system error", "\"/dev/null/loom_x\"", "Not a directory"});
  r = report_of([] { std::filesystem::rename("/nonexistent_a", "/nonexistent_b"); });
  expect_report(r, 1, {"\"/nonexistent_a\"", "\"/nonexistent_b\"", "No such file"});
  r = report_of(
      [] { throw std::system_error(std::make_error_code(std::errc::io_error), "write"); });
  expect_report(r, 1, {"system error", "write"});
}

TEST(ErrorReportTest, AnythingElseIsStillLabelled) {
  expect_report(report_of([] { throw std::runtime_error("boom"); }), 1,
                {"unexpected error", "boom"});
  expect_report(report_of([] { throw 42; }), 1, {"unexpected error"});
}

}  // namespace
}  // namespace loom::cli
