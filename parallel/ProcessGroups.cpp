// ProcessGrid construction: validate the layout, compute this rank's coordinates, then split the
// world three times (each split is collective, so every rank performs all three in the same order).
#include "parallel/ProcessGroups.h"

namespace loom {

void ProcessGrid::validate(int world_size, int tp, int pp, int dp) {
  LOOM_CHECK(tp >= 1 && pp >= 1 && dp >= 1, "ProcessGrid: expected tp, pp, dp >= 1, got tp=", tp,
             " pp=", pp, " dp=", dp);
  LOOM_CHECK(int64_t(tp) * pp * dp == world_size, "ProcessGrid: expected tp*pp*dp == world size ",
             world_size, ", got tp=", tp, " * pp=", pp, " * dp=", dp, " = ", int64_t(tp) * pp * dp,
             "; hint: launch ", int64_t(tp) * pp * dp, " ranks or change the parallel layout");
}

GridCoords ProcessGrid::coords_of(int global_rank, int tp, int pp, int dp) {
  validate(tp * pp * dp, tp, pp, dp);
  LOOM_CHECK(global_rank >= 0 && global_rank < tp * pp * dp, "ProcessGrid: expected a rank in [0, ",
             tp * pp * dp, "), got ", global_rank);
  return {global_rank % tp, (global_rank / tp) % pp, global_rank / (tp * pp)};
}

int ProcessGrid::global_rank_of(GridCoords c, int tp, int pp) {
  return c.tp + tp * (c.pp + pp * c.dp);
}

ProcessGrid::ProcessGrid(std::shared_ptr<Communicator> world, int tp, int pp, int dp)
    : world_(std::move(world)), tp_(tp), pp_(pp), dp_(dp) {
  LOOM_CHECK(world_ != nullptr, "ProcessGrid: expected a world communicator, got nullptr");
  validate(world_->size(), tp, pp, dp);
  coords_ = coords_of(world_->rank(), tp, pp, dp);
  const GridCoords c = coords_;
  const std::string base = world_->name();
  // Color = index of the group among its kind; key = rank within the group.
  tp_group_ = world_->split(c.pp + pp * c.dp, c.tp,
                            detail::str_cat(base, ".tp[pp", c.pp, ",dp", c.dp, "]"));
  pp_group_ = world_->split(c.tp + tp * c.dp, c.pp,
                            detail::str_cat(base, ".pp[tp", c.tp, ",dp", c.dp, "]"));
  dp_group_ = world_->split(c.tp + tp * c.pp, c.dp,
                            detail::str_cat(base, ".dp[tp", c.tp, ",pp", c.pp, "]"));
  // The model-parallel group: the TP x PP ranks of one data-parallel replica.
  mp_group_ = world_->split(c.dp, c.tp + tp * c.pp, detail::str_cat(base, ".mp[dp", c.dp, "]"));
  LOOM_INTERNAL_ASSERT(tp_group_->size() == tp && tp_group_->rank() == c.tp);
  LOOM_INTERNAL_ASSERT(pp_group_->size() == pp && pp_group_->rank() == c.pp);
  LOOM_INTERNAL_ASSERT(dp_group_->size() == dp && dp_group_->rank() == c.dp);
}

std::string ProcessGrid::tag() const {
  return detail::str_cat("[r", global_rank(), " tp", coords_.tp, " pp", coords_.pp, " dp",
                         coords_.dp, "] ");
}

}  // namespace loom
