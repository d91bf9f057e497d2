// Every environment variable Loom reads is declared here, once, with what it does. Nothing else in
// the code base calls getenv(). Bad values (non-numbers, out of range) throw ConfigError naming the
// variable and the value.
#pragma once

#include <cstdint>
#include <string>

namespace loom::env {

// Log level: DEBUG, INFO (default), WARN, ERROR.
inline constexpr const char* kLogLevel = "LOOM_LOG_LEVEL";
// Number of CPU threads for Loom's kernels and OpenBLAS (default: OpenMP's default, i.e. cores).
inline constexpr const char* kNumThreads = "LOOM_NUM_THREADS";
// 1 = bitwise reproducible runs (fixed reduction orders; ordered all-reduce in parallel/).
inline constexpr const char* kDeterministic = "LOOM_DETERMINISTIC";
// Fault injection spec (only with -DLOOM_FAULT_INJECTION=ON), e.g. "ckpt.after_shards:rank=1:signal=KILL".
inline constexpr const char* kFault = "LOOM_FAULT";
// Test-only fault injection: this world rank _Exit(9)s halfway through writing its checkpoint shard.
inline constexpr const char* kTestKillRankInSave = "LOOM_TEST_KILL_RANK_IN_SAVE";
// Collective deadline in seconds for parallel/ communicators (default 300).
inline constexpr const char* kCommTimeoutS = "LOOM_COMM_TIMEOUT_S";
// 1 = communicators exchange a fingerprint (op, seq, dtype, shape) before every collective and
// throw CollectiveMismatch when ranks disagree (costs one small extra collective per call).
inline constexpr const char* kCommDebug = "LOOM_COMM_DEBUG";
// Set by the process launchers; `loom train` initialises MPI when any is set (world size > 0):
// OpenMPI's mpirun, MPICH/Intel (PMI) and Slurm's srun.
inline constexpr const char* kOmpiWorldSize = "OMPI_COMM_WORLD_SIZE";
inline constexpr const char* kPmiSize = "PMI_SIZE";
inline constexpr const char* kSlurmNtasks = "SLURM_NTASKS";
// Set inside a Slurm allocation; `loom launch` without -n then asks for srun instead.
inline constexpr const char* kSlurmJobId = "SLURM_JOB_ID";
// The mpirun executable `loom launch` runs (default: mpirun from PATH).
inline constexpr const char* kMpirun = "LOOM_MPIRUN";

// OpenMP's wait policy (read by libgomp at load time). `loom` sets it to passive and re-executes
// itself when it is unset, so idle OpenMP threads sleep instead of spinning on cores that other
// ranks or processes need; set it to active explicitly for dedicated cores.
inline constexpr const char* kOmpWaitPolicy = "OMP_WAIT_POLICY";

bool is_set(const char* name);
std::string get_string(const char* name, const std::string& fallback);
// Parses a base-10 integer in [lo, hi]; throws ConfigError otherwise.
int64_t get_int(const char* name, int64_t fallback, int64_t lo, int64_t hi);
bool get_bool(const char* name, bool fallback);

}  // namespace loom::env
