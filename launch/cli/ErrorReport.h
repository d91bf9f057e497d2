// What the user sees when `loom` fails: the documented exit code and a labelled message for any
// exception, Loom's own or a library's (no raw "[json.exception.type_error.302]", "stoll" or
// "std::bad_alloc" reaches the user unexplained). The classes and codes (README.md, `loom --help`):
//   1 error (bad data, I/O, internal), 2 config or command-line error, 3 checkpoint error,
//   4 communication timeout, 5 out of memory, 6 non-finite loss or weights.
//   try { ... } catch (...) {
//     ErrorReport r = report_current_exception();
//     std::fprintf(stderr, "loom: error: %s\n", r.message.c_str());
//     return r.exit_code;
//   }
#pragma once

#include <string>

namespace loom::cli {

struct ErrorReport {
  int exit_code = 1;
  std::string message;
};

// Call only while an exception is being handled (inside a catch block).
ErrorReport report_current_exception();

}  // namespace loom::cli
