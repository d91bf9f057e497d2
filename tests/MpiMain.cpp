// Shared main() of every *_mpi_test: MPI_Init_thread, then GoogleTest with a listener that makes
// all ranks agree on each test's verdict. After each test the ranks all-reduce (MAX) a failure
// flag and gather their failure text on rank 0; a test that failed on any rank is marked failed on
// every rank, and rank 0 prints the other ranks' assertion text prefixed "[rN] ". Ranks != 0 drop
// gtest's printer, so the log reads like a single-process run. A failed MPI init is a FAILURE
// (non-zero exit with a message), never a skip. The exit code is the MAX over ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

class RankAgreementListener : public testing::EmptyTestEventListener {
 public:
  RankAgreementListener(MPI_Comm comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}

  void OnTestStart(const testing::TestInfo&) override { text_.clear(); }

  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::ostringstream os;
    os << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number() << ": "
       << r.summary() << "\n";
    text_ += os.str();
  }

  // NB: gtest calls OnTestEnd in reverse listener order, so this (appended after the printer)
  // runs before rank 0's printer reports the verdict, and ADD_FAILURE still counts for this test.
  void OnTestEnd(const testing::TestInfo& info) override {
    int local = info.result()->Failed() ? 1 : 0;
    std::string mine = local ? text_ : std::string();
    int len = int(mine.size());
    std::vector<int> lens(size_t(size_), 0), displs(size_t(size_), 0);
    MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm_);
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[size_t(r)] = total;
      total += lens[size_t(r)];
    }
    std::string all(size_t(rank_ == 0 ? total : 0), '\0');
    MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0,
                comm_);
    int any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm_);
    if (!any) return;
    if (rank_ != 0) {
      if (!local) ADD_FAILURE() << "failed on another rank (rank 0 prints its text)";
      return;
    }
    std::ostringstream report;
    std::vector<int> failed;
    for (int r = 1; r < size_; ++r) {
      if (lens[size_t(r)] == 0) continue;
      failed.push_back(r);
      std::istringstream lines(all.substr(size_t(displs[size_t(r)]), size_t(lens[size_t(r)])));
      for (std::string line; std::getline(lines, line);) report << "[r" << r << "] " << line << "\n";
    }
    if (failed.empty()) return;  // only rank 0 failed; its own printer already shows why
    std::ostringstream ranks;
    for (size_t i = 0; i < failed.size(); ++i) ranks << (i ? ", " : "") << failed[i];
    ADD_FAILURE() << "test failed on rank(s) [" << ranks.str() << "]:\n" << report.str();
  }

 private:
  MPI_Comm comm_;
  int rank_, size_;
  std::string text_;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  int rc = MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  if (rc != MPI_SUCCESS || provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr, "FAILED: MPI_Init_thread returned %d (thread level %d, wanted %d); a "
                 "failed MPI init is a test failure, not a skip\n", rc, provided,
                 MPI_THREAD_SERIALIZED);
    return 1;
  }
  testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm harness;  // private channel so test traffic never matches the harness's collectives
  MPI_Comm_dup(MPI_COMM_WORLD, &harness);

  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  std::unique_ptr<testing::TestEventListener> printer(
      listeners.Release(listeners.default_result_printer()));
  if (rank == 0) listeners.Append(printer.release());
  listeners.Append(std::make_unique<RankAgreementListener>(harness, rank, size).release());

  int result = RUN_ALL_TESTS();
  int global = 0;
  MPI_Allreduce(&result, &global, 1, MPI_INT, MPI_MAX, harness);
  MPI_Comm_free(&harness);
  MPI_Finalize();
  return global;
}
