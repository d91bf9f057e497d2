// DistributedRuntime (see DistributedRuntime.h).
#include "parallel/data/DistributedRuntime.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Env.h"

namespace loom::dist {

namespace {
std::string hash_hex(int64_t v) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return hex;
}
}  // namespace

bool started_by_launcher() {
  return env::is_set(env::kOmpiWorldSize) || env::is_set(env::kPmiSize) ||
         env::is_set(env::kSlurmNtasks);
}

MpiSession::MpiSession() {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    LOOM_CHECK_T(CommError, rc == MPI_SUCCESS && provided >= MPI_THREAD_SERIALIZED,
                 "MPI_Init_thread: expected thread level MPI_THREAD_SERIALIZED, got return code ",
                 rc, " and level ", provided);
    owns_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (owns_ && !fin) MPI_Finalize();
}

void check_config_hash(Communicator& world, const std::string& hash) {
  LOOM_CHECK(hash.size() == 16, "check_config_hash: expected 16 hex digits, got \"", hash, "\"");
  const auto mine = static_cast<int64_t>(std::stoull(hash, nullptr, 16));
  Tensor all = Tensor::zeros({world.size()}, DType::I64);
  world.all_gather(all, Tensor::from_vector<int64_t>({mine}, {1}));
  std::vector<int64_t> v = all.to_vector<int64_t>();
  for (int r = 1; r < world.size(); ++r)
    LOOM_CHECK_T(ConfigError, v[size_t(r)] == v[0], "config hash mismatch (rank ", r,
                 " differs): every rank must resolve the same config (file, --set overrides and "
                 "world size); rank 0 has ", hash_hex(v[0]), ", rank ", r, " has ",
                 hash_hex(v[size_t(r)]));
}

std::string broadcast_string(Communicator& comm, const std::string& text, int root) {
  Tensor len = Tensor::from_vector<int64_t>({int64_t(text.size())}, {1});
  comm.broadcast(len, root);
  const int64_t n = len.to_vector<int64_t>()[0];
  if (n == 0) return {};
  std::vector<int32_t> chars(size_t(n), 0);
  if (comm.rank() == root)
    for (size_t i = 0; i < text.size(); ++i) chars[i] = static_cast<unsigned char>(text[i]);
  Tensor t = Tensor::from_vector<int32_t>(chars, {n});
  comm.broadcast(t, root);
  std::string out;
  for (int32_t c : t.to_vector<int32_t>()) out.push_back(char(c));
  return out;
}

void abort_job(int code) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace loom::dist
