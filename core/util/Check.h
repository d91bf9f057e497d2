// Errors for the whole library: user errors (LOOM_CHECK -> ValueError and friends) vs our own bugs
// (LOOM_INTERNAL_ASSERT -> InternalError). Both stay on in release builds and both throw; nothing in a
// library calls abort() or exit(). Messages follow "<component>: expected <X>, got <Y>[; hint: ...]".
// Context can be added while an exception travels up: catch (loom::Error& e) { e.add_context(...); throw; }
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace loom {

class Error : public std::exception {
 public:
  explicit Error(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }
  // Appends "\n  while <ctx>" so the final message reads from the failure outwards.
  void add_context(const std::string& ctx) { msg_ += "\n  while " + ctx; }
  const std::string& message() const { return msg_; }

 private:
  std::string msg_;
};

// User-facing error classes; launch/ maps them to exit codes (STYLE.md section 6).
class ValueError : public Error { using Error::Error; };        // bad argument / shape / dtype
class InternalError : public Error { using Error::Error; };     // a broken invariant: our bug
class ConfigError : public Error { using Error::Error; };       // exit code 2
class CheckpointError : public Error { using Error::Error; };   // exit code 3
class CommError : public Error { using Error::Error; };         // collective failure
class CommTimeout : public CommError { using CommError::CommError; };  // exit code 4
class OutOfMemoryError : public Error { using Error::Error; };  // exit code 5
class NonFiniteError : public Error { using Error::Error; };    // exit code 6
class DataError : public Error { using Error::Error; };         // bad data file / line
class IoError : public Error { using Error::Error; };           // an output cannot be written

namespace detail {
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_internal(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace loom

#define LOOM_CHECK(cond, ...)                                            \
  do {                                                                   \
    if (!(cond)) [[unlikely]]                                            \
      throw ::loom::ValueError(::loom::detail::str_cat(__VA_ARGS__));    \
  } while (0)

// Like LOOM_CHECK but throws the given error class.
#define LOOM_CHECK_T(ErrorClass, cond, ...)                              \
  do {                                                                   \
    if (!(cond)) [[unlikely]]                                            \
      throw ErrorClass(::loom::detail::str_cat(__VA_ARGS__));            \
  } while (0)

#define LOOM_INTERNAL_ASSERT(cond, ...)                                            \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      ::loom::detail::throw_internal(__FILE__, __LINE__,                           \
                                     ::loom::detail::str_cat(#cond, ": ", ##__VA_ARGS__)); \
  } while (0)
