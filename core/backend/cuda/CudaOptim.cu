// Fused AdamW: one launch updates param, m and v of a whole tensor (PyTorch's decoupled weight
// decay; formula in Backend.h). f32 tensors take 16-byte float4 loads when all four pointers are
// aligned and the size is a multiple of 4; the scalar tail path handles everything else.
#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {
struct AdamArgs {
  float lr, b1, b2, eps, wd, bc1, bc2;
};

__device__ __forceinline__ void adam_one(float& p, float g, float& m, float& v, const AdamArgs& a) {
  p -= a.lr * a.wd * p;
  m = a.b1 * m + (1.0f - a.b1) * g;
  v = a.b2 * v + (1.0f - a.b2) * g * g;
  p -= a.lr * (m / a.bc1) / (sqrtf(v / a.bc2) + a.eps);
}

__global__ void adamw_vec_kernel(float4* p, const float4* g, float4* m, float4* v, int64_t n4,
                                 AdamArgs a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    float4 pp = p[i], gg = g[i], mm = m[i], vv = v[i];
    adam_one(pp.x, gg.x, mm.x, vv.x, a);
    adam_one(pp.y, gg.y, mm.y, vv.y, a);
    adam_one(pp.z, gg.z, mm.z, vv.z, a);
    adam_one(pp.w, gg.w, mm.w, vv.w, a);
    p[i] = pp; m[i] = mm; v[i] = vv;
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, AdamArgs a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adam_one(p[i], g[i], m[i], v[i], a);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
}  // namespace

void CudaBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                             const Tensor& v, double lr, double beta1, double beta2, double eps,
                             double weight_decay, double bias_correction1,
                             double bias_correction2) {
  for (const Tensor* t : {&param, &grad, &m, &v}) {
    LOOM_CHECK(t->dtype() == DType::F32, "adamw_step: expected f32 tensors on device cuda, got ",
               dtype_name(t->dtype()));
    LOOM_CHECK(t->numel() == param.numel(), "adamw_step: expected ", param.numel(),
               " elements in every tensor, got ", t->numel());
  }
  const int64_t n = param.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(param);
  AdamArgs a{float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
             float(bias_correction1), float(bias_correction2)};
  float* pp = param.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  const float* pg = grad.data<float>();
  if (n % 4 == 0 && aligned16(pp) && aligned16(pg) && aligned16(pm) && aligned16(pv)) {
    adamw_vec_kernel<<<grid_for(n / 4, 256), 256, 0, s>>>(
        reinterpret_cast<float4*>(pp), reinterpret_cast<const float4*>(pg),
        reinterpret_cast<float4*>(pm), reinterpret_cast<float4*>(pv), n / 4, a);
  } else {
    adamw_kernel<<<grid_for(n, 256), 256, 0, s>>>(pp, pg, pm, pv, n, a);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
