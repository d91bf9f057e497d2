// Exceptions -> documented exit codes and labelled messages (see ErrorReport.h).
#include "launch/cli/ErrorReport.h"

#include <exception>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"

namespace loom::cli {

namespace {

constexpr const char* kOomHint =
    "; hint: reduce the batch size, the sequence length or the model size, or free memory";

// nlohmann's what() starts with "[json.exception.type_error.302] "; the id says which kind.
ErrorReport json_report(const nlohmann::json::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0 && what.find("] ") != std::string::npos)
    what = what.substr(what.find("] ") + 2);
  const char* label = "invalid JSON";
  if (dynamic_cast<const nlohmann::json::parse_error*>(&e)) label = "malformed JSON";
  if (dynamic_cast<const nlohmann::json::type_error*>(&e))
    label = "a JSON value has the wrong type";
  if (dynamic_cast<const nlohmann::json::out_of_range*>(&e))
    label = "a JSON field is missing or out of range";
  return {1, std::string(label) + " (JSON error " + std::to_string(e.id) + "): " + what};
}

ErrorReport filesystem_report(const std::filesystem::filesystem_error& e) {
  std::string paths = "\"" + e.path1().string() + "\"";
  if (!e.path2().empty()) paths += " and \"" + e.path2().string() + "\"";
  return {1, "file system error on " + paths + ": " + e.code().message() + " (" + e.what() + ")"};
}

// Messages that Loom built around a nlohmann what() ("line 2: not valid JSON: [json.exception.
// parse_error.101] parse error at ...") keep the text and lose the library's id.
std::string without_json_ids(std::string m) {
  const std::string head = "[json.exception.";
  for (size_t p = m.find(head); p != std::string::npos; p = m.find(head, p)) {
    const size_t end = m.find("] ", p);
    if (end == std::string::npos) break;
    m.erase(p, end + 2 - p);
  }
  return m;
}

ErrorReport report_exception_in_flight() {
  try {
    throw;
  } catch (const ConfigError& e) {
    return {2, e.what()};
  } catch (const CheckpointError& e) {
    return {3, e.what()};
  } catch (const CommTimeout& e) {
    return {4, e.what()};
  } catch (const OutOfMemoryError& e) {
    return {5, e.what()};
  } catch (const NonFiniteError& e) {
    return {6, e.what()};
  } catch (const InternalError& e) {
    return {1, std::string("internal error (a bug in Loom; please report it): ") + e.what()};
  } catch (const Error& e) {  // ValueError, DataError, CommError: generic
    return {1, e.what()};
  } catch (const std::bad_alloc& e) {
    return {5,
            std::string("out of memory: a host allocation failed (") + e.what() + ")" + kOomHint};
  } catch (const std::length_error& e) {
    // std::vector / std::string asked for more than max_size(): a size no allocation can meet.
    return {5, std::string("out of memory: a requested size exceeds what can be allocated (") +
                   e.what() + ")" + kOomHint};
  } catch (const nlohmann::json::exception& e) {
    return json_report(e);
  } catch (const std::filesystem::filesystem_error& e) {
    return filesystem_report(e);
  } catch (const std::system_error& e) {
    return {1, std::string("system error: ") + e.what() + " (" + e.code().message() + ")"};
  } catch (const std::invalid_argument& e) {
    // std::stoll and friends put only their own name in what().
    return {1, std::string("a number could not be parsed (") + e.what() + ": not a number)"};
  } catch (const std::out_of_range& e) {
    return {1, std::string("a number or index is out of range (") + e.what() + ")"};
  } catch (const std::exception& e) {
    return {1, std::string("unexpected error: ") + e.what()};
  } catch (...) {
    return {1, "unexpected error of a type that is not a std::exception"};
  }
}

}  // namespace

ErrorReport report_current_exception() {
  ErrorReport r = report_exception_in_flight();
  r.message = without_json_ids(std::move(r.message));
  return r;
}

}  // namespace loom::cli
