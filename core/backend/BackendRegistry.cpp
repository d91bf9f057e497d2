// Backend lookup by device kind. Which backends exist is decided by which sources CMake compiled:
// core/backend/cuda/ when nvcc was found, core/backend/nocuda/ otherwise.
#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"

namespace loom {

Backend& cpu_backend() { return cpu::the_cpu_backend(); }

bool backend_available(DeviceType type) {
  return type == DeviceType::CPU || cuda_backend() != nullptr;
}

Backend& backend_for(DeviceType type) {
  if (type == DeviceType::CPU) return cpu_backend();
  Backend* be = cuda_backend();
  LOOM_CHECK(be != nullptr, "device cuda: no CUDA backend available (Loom was built without "
             "CUDA, or no GPU is visible); hint: use device cpu or rebuild with nvcc on PATH");
  return *be;
}

Backend& backend_for(Device device) { return backend_for(device.type); }

const char* unary_op_name(UnaryOp op) {
  static const char* names[] = {"neg", "exp", "log", "tanh", "sqrt", "rsqrt", "relu", "gelu",
                                "abs", "sigmoid", "square", "add_scalar", "mul_scalar",
                                "pow_scalar", "rsub_scalar", "rdiv_scalar", "clamp"};
  return names[int(op)];
}

const char* binary_op_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq",
                                "ne", "lt", "le", "gt", "ge", "gelu_backward", "relu_backward",
                                "tanh_backward"};
  return names[int(op)];
}

}  // namespace loom
