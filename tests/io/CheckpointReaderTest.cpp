// CheckpointReader (issue 11 item 2): any piece (whole, rows, stacked qkv rows, split dim 1, an
// uneven row range) of a checkpoint tensor equals extract_shard of the logical tensor bitwise,
// whatever layout saved it (4 Fake ranks, 2 Fake ranks, one writer); a TP=2 rank reading its half
// of a large tensor reads half the bytes (the reader's counter and the kernel's read counters
// agree), with one read call when the save used the same layout, and allocates only its piece;
// wrong requests name the directory and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/backend/Backend.h"
#include "core/random/Generator.h"
#include "io/CheckpointReader.h"
#include "parallel/comm/FakeCommunicator.h"
#include "tests/io/PieceTestUtil.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

using test::expect_bitwise;
using test::pieces_of;

// Layout: for each tensor name, the spec of rank `rank` out of `size` (a name may be absent).
using Layout = std::function<std::map<std::string, ShardSpec>(int rank, int size)>;

const Shape kQkv{24, 4}, kProj{4, 8}, kWte{10, 4}, kBig{512, 256};

std::map<std::string, ShardSpec> layout_tp(int rank, int size) {
  std::map<std::string, ShardSpec> m;
  m["model/qkv.weight"] = ShardSpec::rows(kQkv, 3, rank, size);
  m["model/proj.weight"] = ShardSpec::split(kProj, 1, rank, size);
  m["model/wte.weight"] = ShardSpec::row_range(kWte, rank * 10 / size, (rank + 1) * 10 / size);
  m["optim/exp_avg/proj.weight"] = ShardSpec::split(kProj, 0, rank, size);
  m["model/big.weight"] = ShardSpec::split(kBig, 0, rank, size);
  if (rank == size - 1) m["model/ln.bias"] = ShardSpec::whole({4});
  return m;
}

// The same tensors cut the other way.
std::map<std::string, ShardSpec> layout_cols(int rank, int size) {
  std::map<std::string, ShardSpec> m;
  m["model/qkv.weight"] = ShardSpec::split(kQkv, 1, rank, size);
  m["model/proj.weight"] = ShardSpec::split(kProj, 0, rank, size);
  m["model/wte.weight"] = ShardSpec::split(kWte, 1, rank, size);
  m["optim/exp_avg/proj.weight"] = ShardSpec::split(kProj, 1, rank, size);
  m["model/big.weight"] = ShardSpec::split(kBig, 1, rank, size);
  if (rank == 0) m["model/ln.bias"] = ShardSpec::whole({4});
  return m;
}

// This process's read counters from /proc/self/io: bytes and calls of read-type syscalls.
struct IoCounters {
  int64_t rchar = 0, syscr = 0;
};
IoCounters io_counters() {
  std::ifstream f("/proc/self/io");
  IoCounters c;
  std::string key;
  int64_t v = 0;
  while (f >> key >> v) {
    if (key == "rchar:") c.rchar = v;
    if (key == "syscr:") c.syscr = v;
  }
  return c;
}

class CheckpointReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() /
             ("loom_reader_" +
              std::string(::testing::UnitTest::GetInstance()->current_test_info()->name())))
                .string();
    fs::remove_all(root_);
    Generator g(5);
    logical_["model/qkv.weight"] = Tensor::randn(kQkv, g);
    logical_["model/proj.weight"] = Tensor::randn(kProj, g, DType::F64);
    logical_["model/wte.weight"] = Tensor::randn(kWte, g);
    logical_["optim/exp_avg/proj.weight"] = Tensor::randn(kProj, g).to(DType::BF16);
    logical_["model/big.weight"] = Tensor::randn(kBig, g);
    logical_["model/ln.bias"] = Tensor::randn({4}, g);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Saves the logical tensors cut by `layout` from `size` Fake ranks; returns the directory.
  std::string save(const Layout& layout, int size, int64_t step) {
    std::string dir;
    run_fake_ranks(size, [&](Communicator& c) {
      Checkpoint ck;
      ck.step = step;
      for (const auto& [name, spec] : layout(c.rank(), size))
        ck.pieces[name] = {extract_shard(logical_.at(name), spec), spec};
      std::string d = save_checkpoint(root_, ck, 0, c);
      if (c.rank() == 0) dir = d;
    });
    return dir;
  }
  std::string save_whole(int64_t step) {
    Checkpoint ck;
    ck.step = step;
    ck.tensors = logical_;
    return save_checkpoint(root_, ck);
  }

  void expect_every_piece(const std::string& dir) {
    CheckpointReader r(dir);
    ASSERT_EQ(r.names().size(), logical_.size());
    for (const auto& [name, t] : logical_) {
      ASSERT_EQ(r.info(name)->shape, t.shape()) << name;
      EXPECT_EQ(r.info(name)->dtype, t.dtype()) << name;
      for (int size : {1, 2, 3, 4})
        for (const ShardSpec& s : pieces_of(t.shape(), size))
          expect_bitwise(r.read(name, s), extract_shard(t, s), name + " " + s.str() + " of " + dir);
    }
  }

  std::string root_;
  std::map<std::string, Tensor> logical_;
};

TEST_F(CheckpointReaderTest, EveryPieceEqualsExtractShardWhateverLayoutSaved) {
  expect_every_piece(save(layout_tp, 4, 1));
  expect_every_piece(save(layout_cols, 2, 2));
  expect_every_piece(save_whole(3));
}

TEST_F(CheckpointReaderTest, LoadCheckpointReadsTheWholeTensorsThroughTheReader) {
  Checkpoint back = load_checkpoint(save(layout_tp, 4, 1));
  ASSERT_EQ(back.tensors.size(), logical_.size());
  for (const auto& [name, t] : logical_) expect_bitwise(back.tensors.at(name), t, name);
}

// A TP=2 rank reading its half of a 512 KiB tensor: exactly its piece's bytes pass through
// pread, counted both by the reader and by the kernel (/proc/self/io), and the only tensor memory
// it allocates is the piece itself.
TEST_F(CheckpointReaderTest, ATp2RankReadsAndHoldsOnlyItsHalf) {
  const int64_t piece_bytes = shape_numel(kBig) * 4 / 2;
  Backend& be = backend_for(Device::cpu());
  int64_t step = 0;
  for (const Layout& saved : {Layout(layout_tp), Layout(layout_cols)}) {
    const std::string dir = save(saved, 2, ++step);
    CheckpointReader r(dir, LoadOptions::weights_only());
    for (const ShardSpec& s : {ShardSpec::split(kBig, 0, 1, 2), ShardSpec::split(kBig, 1, 0, 2)}) {
      const uint64_t before = r.bytes_read();
      const size_t live = be.allocated_bytes(0);
      be.reset_peak(0);
      // NB: reading /proc/self/io itself is counted (a few hundred bytes, one or two calls): the
      // cost of one snapshot, measured just before with nothing between, is subtracted below.
      // (Measured once at the start, the text had grown by then: the saves' wchar / write_bytes
      // gained digits, by more than 16 bytes on a loaded machine.)
      const IoCounters z = io_counters(), a = io_counters();
      const int64_t probe_bytes = a.rchar - z.rchar, probe_calls = a.syscr - z.syscr;
      Tensor got = r.read("model/big.weight", s);
      const IoCounters b = io_counters();
      const int64_t peak_extra = int64_t(be.peak_allocated_bytes(0)) - int64_t(live);
      EXPECT_EQ(int64_t(r.bytes_read() - before), piece_bytes) << s.str();
      // 16: the /proc/self/io text may grow by a digit or two between snapshots.
      EXPECT_NEAR(double(b.rchar - a.rchar - probe_bytes), double(piece_bytes), 16) << s.str();
      EXPECT_EQ(peak_extra, piece_bytes) << s.str();  // the piece, nothing else
      expect_bitwise(got, extract_shard(logical_.at("model/big.weight"), s), s.str());
      // Same layout as the save (rows of a row split): one read. Across layouts: a read per row
      // overlap (512 rows x 1 stored piece, or 256 rows x 2 stored pieces).
      const bool same = (s.dim == 0) == (saved(1, 2).at("model/big.weight").dim == 0);
      const int64_t calls = b.syscr - a.syscr - probe_calls;
      if (same)
        EXPECT_EQ(calls, 1) << s.str();
      else
        EXPECT_EQ(calls, s.dim == 0 ? 256 * 2 : 512) << s.str();
    }
  }
}

TEST_F(CheckpointReaderTest, WrongRequestsNameTheDirectoryAndTheTensor) {
  const std::string dir = save(layout_tp, 2, 1);
  CheckpointReader r(dir, LoadOptions::weights_only());
  EXPECT_FALSE(r.info("optim/exp_avg/proj.weight").has_value());  // not selected
  EXPECT_FALSE(r.info("model/nothing").has_value());
  try {
    r.read("model/nothing", ShardSpec::whole({2}));
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(dir + ": has no tensor \"model/nothing\""),
              std::string::npos)
        << e.what();
  }
  try {
    r.read("model/wte.weight", ShardSpec::split({12, 4}, 0, 0, 2));
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tensor \"model/wte.weight\" has shape (10, 4)"), std::string::npos) << m;
    EXPECT_NE(m.find("(12, 4)"), std::string::npos) << m;
  }
}

TEST_F(CheckpointReaderTest, MetaAndStepComeWithTheReader) {
  Checkpoint ck;
  ck.step = 9;
  ck.tensors = logical_;
  ck.meta["trainer"] = R"({"step": 9})";
  CheckpointReader r(save_checkpoint(root_, ck));
  EXPECT_EQ(r.step(), 9);
  EXPECT_EQ(r.meta().at("trainer"), R"({"step": 9})");
  EXPECT_EQ(r.bytes_read(), 0u);  // opening reads metadata only
}

}  // namespace
}  // namespace loom::io
