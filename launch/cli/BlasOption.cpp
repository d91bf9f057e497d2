// The `--blas` option of `loom train` (see Commands.h).
#include "core/backend/cpu/CpuBackend.h"
#include "launch/cli/Commands.h"

namespace loom::cli {

void set_blas_kernels_option(const std::string& name) {
  try {
    cpu::set_blas_kernels(name);
  } catch (const ValueError& e) {
    throw ConfigError(std::string("--blas: ") + e.what());  // a bad flag value: exit code 2
  }
}

}  // namespace loom::cli
