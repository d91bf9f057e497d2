// Out-of-line part of Check.h: keeps the throw path out of every inlined check.
#include "core/util/Check.h"

namespace loom::detail {

void throw_internal(const char* file, int line, const std::string& msg) {
  throw InternalError(str_cat("internal error at ", file, ":", line, ": ", msg,
                              "; this is a bug in Loom, please report it"));
}

}  // namespace loom::detail
