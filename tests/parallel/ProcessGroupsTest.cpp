// ProcessGrid layout (TP fastest, then PP, then DP), validation messages, and the groups it builds
// on an 8-rank Fake world (TP=2 x PP=2 x DP=2).
#include <gtest/gtest.h>

#include <thread>

#include "parallel/ProcessGroups.h"
#include "parallel/comm/FakeCommunicator.h"

namespace loom {
namespace {

TEST(ProcessGroupsTest, CoordinatesAreTpFastestThenPpThenDp) {
  GridCoords c = ProcessGrid::coords_of(5, 2, 2, 2);  // 5 = 1 + 2*(0 + 2*1)
  EXPECT_EQ(c.tp, 1);
  EXPECT_EQ(c.pp, 0);
  EXPECT_EQ(c.dp, 1);
  for (int r = 0; r < 24; ++r)
    EXPECT_EQ(ProcessGrid::global_rank_of(ProcessGrid::coords_of(r, 2, 3, 4), 2, 3), r);
}

TEST(ProcessGroupsTest, WorldSizeMismatchIsAClearValueError) {
  try {
    ProcessGrid::validate(8, 2, 2, 1);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("expected tp*pp*dp == world size 8, got tp=2 * pp=2 * dp=1 = 4"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(ProcessGrid::validate(4, 0, 2, 2), ValueError);
  auto world = FakeCommunicator::create_world(1);
  EXPECT_THROW(ProcessGrid(world[0], 2, 1, 1), ValueError);
}

TEST(ProcessGroupsTest, GroupsOnEightRanksHaveTheRightMembers) {
  CommOptions o;
  o.timeout_s = 10;  // R-1 deadline
  auto comms = FakeCommunicator::create_world(8, o);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(8);
  for (int r = 0; r < 8; ++r) {
    threads.emplace_back([&, r] {
      ProcessGrid g(comms[size_t(r)], 2, 2, 2);
      GridCoords c = ProcessGrid::coords_of(r, 2, 2, 2);
      EXPECT_EQ(g.tp_rank(), c.tp);
      EXPECT_EQ(g.pp_rank(), c.pp);
      EXPECT_EQ(g.dp_rank(), c.dp);
      auto members = [](const Communicator& x) { return x.world_ranks(); };
      int base_tp = r - c.tp;
      EXPECT_EQ(members(g.tp_group()), (std::vector<int>{base_tp, base_tp + 1}));
      EXPECT_EQ(members(g.pp_group()), (std::vector<int>{c.tp + 4 * c.dp, c.tp + 2 + 4 * c.dp}));
      EXPECT_EQ(members(g.dp_group()), (std::vector<int>{c.tp + 2 * c.pp, c.tp + 2 * c.pp + 4}));
      EXPECT_EQ(members(g.mp_group()), (std::vector<int>{4 * c.dp, 4 * c.dp + 1, 4 * c.dp + 2,
                                                         4 * c.dp + 3}));
      EXPECT_EQ(g.mp_group().rank(), c.tp + 2 * c.pp);
      Tensor t = Tensor::full({1}, double(r), DType::I64);
      g.dp_group().all_reduce(t);
      EXPECT_EQ(t.item(), double(2 * (c.tp + 2 * c.pp) + 4));
      EXPECT_EQ(g.tag(), detail::str_cat("[r", r, " tp", c.tp, " pp", c.pp, " dp", c.dp, "] "));
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace
}  // namespace loom
