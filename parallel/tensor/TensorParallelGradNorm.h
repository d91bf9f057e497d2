// Global gradient norm of a tensor-parallel model, computed once across ranks with one f64
// all-reduce: every rank adds the squared norms of its sharded gradients (distinct slices), and
// only TP rank 0 adds those of TP-replicated parameters (biases of row-parallel layers, layer
// norms), so each logical gradient element is counted exactly once. Pass the TP group as `group`,
// or, with pipeline stages, a group over the TP x PP ranks of one data-parallel replica.
//   double norm = tp::clip_grad_norm(mlp.sharded_parameters(), mlp.replicated_parameters(),
//                                    grid.tp_rank(), grid.tp_group(), /*max_norm=*/1.0);
#pragma once

#include <vector>

#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::tp {

// sqrt(sum over all ranks of the counted squared gradient norms). Parameters without .grad are
// skipped. Every rank of `group` must call it (it is a collective) and gets the same value.
double grad_norm(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                 int tp_rank, Communicator& group);
// As torch.nn.utils.clip_grad_norm_: if the global norm exceeds max_norm, every gradient (sharded
// and replicated) is scaled by max_norm / (norm + 1e-6). Returns the norm before clipping; a
// non-finite norm scales nothing.
double clip_grad_norm(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                      int tp_rank, Communicator& group, double max_norm);

}  // namespace loom::tp
