// The checkpoint root (issue 15 D2, D3 and friends): `latest` is the truth for --resume auto,
// fallbacks go by write order (not step number) and warn, pruning touches only this run's complete
// checkpoints and never the one just written, stale temporary directories of dead writers are
// removed, and a root whose every checkpoint is broken is a CheckpointError, not a fresh start.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/Checkpoint.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

class CheckpointLineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() /
             ("loom_lineage_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string save(int64_t step, int keep_last = 0) {
    Checkpoint ck;
    ck.step = step;
    ck.tensors["model/w"] = Tensor::full({4}, double(step));
    ck.tensors["optim/m/w"] = Tensor::full({4}, 0.5);
    return save_checkpoint(root_, ck, keep_last);
  }
  std::string dir(int64_t step) const { return root_ + "/" + checkpoint_dir_name(step); }
  bool has(int64_t step) const { return fs::exists(dir(step)); }
  std::string latest() const {
    std::ifstream f(root_ + "/latest");
    std::string s;
    std::getline(f, s);
    return s;
  }

  std::string root_;
};

// D3: after a rollback to step 10 and training on to 18, `--resume auto` took the abandoned
// step 20 (the highest number). `latest` names 18.
TEST_F(CheckpointLineageTest, LatestIsTheTruthAfterARollback) {
  for (int64_t s : {5, 10, 15, 20}) save(s);
  for (int64_t s : {12, 14, 16, 18}) save(s);  // resumed from step 10: written after step 20
  EXPECT_EQ(find_latest_checkpoint(root_), dir(18));
  std::string loaded;
  std::optional<Checkpoint> ck = load_latest_checkpoint(root_, {}, &loaded);
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->step, 18);
  EXPECT_EQ(loaded, dir(18));
}

TEST_F(CheckpointLineageTest, WithoutLatestTheNewestWriteWinsNotTheHighestStep) {
  for (int64_t s : {10, 20, 12, 14}) save(s);
  fs::remove(root_ + "/latest");
  EXPECT_EQ(find_latest_checkpoint(root_), dir(14));
  std::ofstream(root_ + "/latest") << "../../etc\n";  // corrupt: not a step directory name
  EXPECT_EQ(find_latest_checkpoint(root_), dir(14));
  std::ofstream(root_ + "/latest") << "step_00000099\n";  // names a checkpoint that is gone
  EXPECT_EQ(find_latest_checkpoint(root_), dir(14));
}

TEST_F(CheckpointLineageTest, AnIncompleteLatestFallsBackToTheNewestCompleteWrite) {
  for (int64_t s : {10, 20, 12, 14}) save(s);
  fs::remove(dir(14) + "/model.h5");
  EXPECT_EQ(find_latest_checkpoint(root_), dir(12));
}

// Issue 15: every checkpoint corrupt restarted from step 0 with exit 0.
TEST_F(CheckpointLineageTest, EveryCheckpointBrokenIsAnErrorNotAFreshStart) {
  EXPECT_EQ(find_latest_checkpoint(root_), "");  // no root: a fresh start
  EXPECT_FALSE(load_latest_checkpoint(root_).has_value());
  save(10);
  save(20);
  fs::remove(dir(10) + "/MANIFEST.json");
  fs::resize_file(dir(20) + "/tensors.h5", 5);
  try {
    find_latest_checkpoint(root_);
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("none is complete"), std::string::npos) << m;
    EXPECT_NE(m.find(dir(10) + "/MANIFEST.json is missing"), std::string::npos) << m;
    EXPECT_NE(m.find(dir(20) + "/tensors.h5: expected"), std::string::npos) << m;
  }
  EXPECT_THROW(load_latest_checkpoint(root_), CheckpointError);
  // `latest` alone, naming a directory that was deleted, is a checkpoint that is gone too.
  fs::remove_all(dir(10));
  fs::remove_all(dir(20));
  EXPECT_THROW(find_latest_checkpoint(root_), CheckpointError);
}

TEST_F(CheckpointLineageTest, LoadLatestFallsBackPastACorruptLatestByWriteOrder) {
  for (int64_t s : {10, 30, 20}) save(s);
  {
    std::fstream f(dir(20) + "/model.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-20, std::ios::end);
    f.put('\x5a');  // sizes still match: only the hash catches it
  }
  EXPECT_EQ(find_latest_checkpoint(root_), dir(20));
  std::string loaded;
  std::optional<Checkpoint> ck = load_latest_checkpoint(root_, {}, &loaded);
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(loaded, dir(30));  // written after step 10
  EXPECT_EQ(ck->step, 30);
}

// D2: with keep_last 1, the checkpoint just written was deleted because an abandoned step 20 sorted
// after it; `latest` then named nothing.
TEST_F(CheckpointLineageTest, PruningNeverDeletesTheCheckpointJustWrittenAfterARollback) {
  save(10);
  save(20);
  std::string twelve = save(12, /*keep_last=*/1);
  EXPECT_TRUE(has(12));
  EXPECT_EQ(latest(), checkpoint_dir_name(12));
  EXPECT_EQ(find_latest_checkpoint(root_), twelve);
  EXPECT_FALSE(has(10));  // an ancestor of this lineage beyond keep_last
  EXPECT_TRUE(has(20));   // another lineage's: never touched
  save(14, 2);
  EXPECT_TRUE(has(12));
  EXPECT_TRUE(has(14));
  EXPECT_TRUE(has(20));
}

TEST_F(CheckpointLineageTest, StaleEmptyAndTemporaryDirectoriesAreNeverCountedAsKept) {
  fs::create_directories(dir(99));                     // empty, final-named
  fs::create_directories(dir(98) + ".tmp-999999999");  // a writer that died (no such process)
  fs::create_directories(dir(97) + ".del-999999999");  // a prune that died
  const std::string live = dir(96) + ".tmp-" + std::to_string(::getppid());  // a live writer
  fs::create_directories(live);
  save(1, 1);
  save(2, 1);
  EXPECT_TRUE(has(2));
  EXPECT_FALSE(has(1));
  EXPECT_EQ(find_latest_checkpoint(root_), dir(2));
  EXPECT_TRUE(fs::exists(dir(99)));  // not ours to judge: left alone (and skipped with a warning)
  EXPECT_FALSE(fs::exists(dir(98) + ".tmp-999999999"));
  EXPECT_FALSE(fs::exists(dir(97) + ".del-999999999"));
  EXPECT_TRUE(fs::exists(live));
}

TEST_F(CheckpointLineageTest, ResavingAStepReplacesItAndKeepsItNewest) {
  save(10);
  save(20);
  save(10);  // a rollback that reached step 10 again
  EXPECT_EQ(find_latest_checkpoint(root_), dir(10));
  fs::remove(root_ + "/latest");
  EXPECT_EQ(find_latest_checkpoint(root_), dir(10));  // written last
}

}  // namespace
}  // namespace loom::io
