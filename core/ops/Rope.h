// Rotary position embedding (RoPE), rotate-half form as in Llama / Hugging Face: each head's
// dimensions j and j + D/2 are rotated by the angle of (position t, frequency j). The angles come
// as cos / sin tables (T, D/2) for the T positions of x (models/Rope.h builds them from rope_theta
// and the scaling rule; a KV-cached step passes the rows of its positions), so the op knows
// nothing about frequencies and works for any position offset.
//   Tensor q_rot = loom::rope(q, cos, sin);   // q (B,T,H,D), cos/sin (T, D/2)
#pragma once

#include "core/tensor/Tensor.h"

namespace loom {

// x (B,T,H,D) with D even, any strides; cos, sin (T, D/2) of x's dtype (f32 for bf16 x), not
// differentiated. Returns (B,T,H,D) contiguous; backward rotates the gradient by minus the angle.
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace loom
