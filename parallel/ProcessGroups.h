// ProcessGrid: splits the world communicator into tensor-, pipeline- and data-parallel groups.
// world = TP x PP x DP with TP fastest-varying, then PP, then DP (so the TP group of a rank is a
// run of consecutive ranks and sits inside one node):
//   global_rank = tp_rank + tp * (pp_rank + pp * dp_rank)
// Validation happens before any communication, so a bad layout fails identically on every rank.
//
//   ProcessGrid grid(world, /*tp=*/2, /*pp=*/2, /*dp=*/2);   // 8 ranks
//   grid.tp_group().all_reduce(partial);                     // ranks {0,1}, {2,3}, ...
#pragma once

#include <memory>
#include <string>

#include "parallel/comm/Communicator.h"

namespace loom {

struct GridCoords {
  int tp = 0, pp = 0, dp = 0;
};

class ProcessGrid {
 public:
  // Collective over `world`. Throws ValueError if tp*pp*dp != world->size() or a size is < 1.
  ProcessGrid(std::shared_ptr<Communicator> world, int tp, int pp, int dp);

  // Pure layout helpers (no communicator needed); throw ValueError on a bad layout.
  static void validate(int world_size, int tp, int pp, int dp);
  static GridCoords coords_of(int global_rank, int tp, int pp, int dp);
  static int global_rank_of(GridCoords c, int tp, int pp);

  int tp_size() const { return tp_; }
  int pp_size() const { return pp_; }
  int dp_size() const { return dp_; }
  int tp_rank() const { return coords_.tp; }
  int pp_rank() const { return coords_.pp; }
  int dp_rank() const { return coords_.dp; }
  int global_rank() const { return world_->rank(); }
  bool is_first_stage() const { return coords_.pp == 0; }
  bool is_last_stage() const { return coords_.pp == pp_ - 1; }

  Communicator& world() const { return *world_; }
  Communicator& tp_group() const { return *tp_group_; }
  Communicator& pp_group() const { return *pp_group_; }
  Communicator& dp_group() const { return *dp_group_; }
  // The TP x PP ranks of this rank's data-parallel replica (rank = tp + tp_size * pp): the group
  // over which a replica's global gradient norm is summed.
  Communicator& mp_group() const { return *mp_group_; }
  // Log prefix, e.g. "[r3 tp1 pp0 dp1] " (see core/util/Logging.h).
  std::string tag() const;

 private:
  std::shared_ptr<Communicator> world_, tp_group_, pp_group_, dp_group_, mp_group_;
  int tp_, pp_, dp_;
  GridCoords coords_;
};

}  // namespace loom
