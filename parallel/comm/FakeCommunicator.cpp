// In-process communicator: each collective is a "slot" keyed by its sequence number; every rank
// deposits a copy of its contribution and fingerprint, and each rank computes its own result from
// all contributions (in rank order) when it waits. Point-to-point messages go through mailboxes
// keyed by (src, dst, tag). One mutex + condition variable per world; this is a test backend.
#include "parallel/comm/FakeCommunicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

namespace loom {

namespace detail {

struct FakePart {
  bool present = false;
  CollectiveFingerprint fp;
  std::vector<uint8_t> bytes;
};

struct FakeSlot {
  std::vector<FakePart> parts;
  int arrived = 0;
  int consumed = 0;
};

struct FakeWorld {
  int n = 0;
  std::vector<int> world_ranks;
  std::mutex mu;
  std::condition_variable cv;
  std::map<int64_t, FakeSlot> slots;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<uint8_t>>> mail;  // (src, dst, tag)
  std::map<std::pair<int64_t, int>, std::shared_ptr<FakeWorld>> children;    // (seq, color)
};

}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;
using detail::FakeWorld;

std::vector<uint8_t> bytes_of(const Tensor& t) {
  std::vector<uint8_t> b(t.nbytes());
  if (!b.empty()) std::memcpy(b.data(), t.raw_data(), b.size());
  return b;
}

// Common state of a Fake work item: the deadline and the strings for error messages.
class FakeWorkBase : public Work {
 public:
  FakeWorkBase(std::shared_ptr<FakeWorld> world, int rank, const Communicator& comm,
               CollectiveFingerprint fp)
      : world_(std::move(world)), rank_(rank), group_(comm.describe()),
        timeout_s_(comm.timeout_s()), fp_(fp),
        deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s_))) {}

  void wait() override {
    if (error_) std::rethrow_exception(error_);
    if (done_) return;
    try {
      std::unique_lock<std::mutex> lock(world_->mu);
      run(lock);
      done_ = true;
    } catch (...) {
      error_ = std::current_exception();
      throw;
    }
  }

 protected:
  // Waits for and applies the op's result; throws on timeout or mismatch. Lock held.
  virtual void run(std::unique_lock<std::mutex>& lock) = 0;
  [[noreturn]] void timeout(const std::string& op_desc, const std::string& missing) const {
    throw CommTimeout(timeout_message(group_, rank_, timeout_s_, op_desc, missing, fp_));
  }

  std::shared_ptr<FakeWorld> world_;
  int rank_;
  std::string group_;
  double timeout_s_;
  CollectiveFingerprint fp_;
  Clock::time_point deadline_;
  bool done_ = false;
  std::exception_ptr error_;
};

class FakeCollectiveWork : public FakeWorkBase {
 public:
  FakeCollectiveWork(std::shared_ptr<FakeWorld> world, int rank, const Communicator& comm,
                     CollectiveFingerprint fp, Tensor out)
      : FakeWorkBase(std::move(world), rank, comm, fp), out_(std::move(out)) {}

  bool is_completed() override {
    if (done_ || error_) return true;
    std::lock_guard<std::mutex> lock(world_->mu);
    return world_->slots.at(fp_.seq).arrived == world_->n;
  }

 protected:
  void run(std::unique_lock<std::mutex>& lock) override {
    detail::FakeSlot& slot = world_->slots.at(fp_.seq);
    int n = world_->n;
    if (!world_->cv.wait_until(lock, deadline_, [&] { return slot.arrived == n; })) {
      std::vector<int> missing;
      for (int r = 0; r < n; ++r)
        if (!slot.parts[size_t(r)].present) missing.push_back(world_->world_ranks[size_t(r)]);
      timeout(detail::str_cat(comm_op_name(CommOp(fp_.op)), " (seq ", fp_.seq, ")"),
              "ranks that did not arrive: world ranks " + format_ranks(missing));
    }
    std::vector<std::pair<int, CollectiveFingerprint>> others;
    for (int r = 0; r < n; ++r)
      if (!(slot.parts[size_t(r)].fp == fp_)) others.emplace_back(r, slot.parts[size_t(r)].fp);
    std::string mismatch = others.empty() ? "" : mismatch_message(group_, rank_, fp_, others);
    if (others.empty()) apply(slot);
    if (++slot.consumed == n) world_->slots.erase(fp_.seq);
    if (!mismatch.empty()) throw CollectiveMismatch(mismatch);
  }

 private:
  void apply(const detail::FakeSlot& slot) {
    int n = world_->n;
    CommOp op = CommOp(fp_.op);
    if (op == CommOp::Barrier) return;
    std::vector<const void*> ptrs(static_cast<size_t>(n));
    size_t out_bytes = out_.nbytes();
    if (op == CommOp::AllReduce || op == CommOp::ReduceScatter) {
      size_t skip = op == CommOp::ReduceScatter ? size_t(rank_) * out_bytes : 0;
      for (int r = 0; r < n; ++r) ptrs[size_t(r)] = slot.parts[size_t(r)].bytes.data() + skip;
      reduce_ordered(out_.raw_data(), ptrs.data(), n, out_.numel(), out_.dtype(),
                     ReduceOp(fp_.reduce));
    } else if (op == CommOp::AllGather) {
      size_t chunk = out_bytes / size_t(n);
      for (int r = 0; r < n && chunk > 0; ++r)
        std::memcpy(static_cast<uint8_t*>(out_.raw_data()) + size_t(r) * chunk,
                    slot.parts[size_t(r)].bytes.data(), chunk);
    } else if (op == CommOp::Broadcast && rank_ != fp_.root && out_bytes > 0) {
      std::memcpy(out_.raw_data(), slot.parts[size_t(fp_.root)].bytes.data(), out_bytes);
    }
    out_.bump_version();
  }

  Tensor out_;
};

class FakeRecvWork : public FakeWorkBase {
 public:
  FakeRecvWork(std::shared_ptr<FakeWorld> world, int rank, const Communicator& comm,
               CollectiveFingerprint fp, Tensor out, int src, int tag)
      : FakeWorkBase(std::move(world), rank, comm, fp), out_(std::move(out)), src_(src), tag_(tag) {}

  bool is_completed() override {
    if (done_ || error_) return true;
    std::lock_guard<std::mutex> lock(world_->mu);
    auto it = world_->mail.find({src_, rank_, tag_});
    return it != world_->mail.end() && !it->second.empty();
  }

 protected:
  void run(std::unique_lock<std::mutex>& lock) override {
    auto& box = world_->mail[{src_, rank_, tag_}];
    if (!world_->cv.wait_until(lock, deadline_, [&] { return !box.empty(); })) {
      timeout(detail::str_cat("recv from rank ", src_, " (tag ", tag_, ")"),
              detail::str_cat("world rank ", world_->world_ranks[size_t(src_)],
                              " sent nothing with this tag"));
    }
    std::vector<uint8_t> msg = std::move(box.front());
    box.pop_front();
    LOOM_CHECK_T(CommError, msg.size() == out_.nbytes(), "recv: expected ", out_.nbytes(),
                 " bytes from rank ", src_, " (tag ", tag_, ") on ", group_, ", got ", msg.size());
    if (!msg.empty()) std::memcpy(out_.raw_data(), msg.data(), msg.size());
    out_.bump_version();
  }

 private:
  Tensor out_;
  int src_, tag_;
};

class DoneWork : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> FakeCommunicator::create_world(int n,
                                                                          CommOptions options) {
  LOOM_CHECK(n >= 1, "FakeCommunicator::create_world: expected n >= 1, got ", n);
  auto world = std::make_shared<FakeWorld>();
  world->n = n;
  for (int r = 0; r < n; ++r) world->world_ranks.push_back(r);
  std::vector<std::shared_ptr<Communicator>> comms;
  for (int r = 0; r < n; ++r) comms.push_back(std::make_shared<FakeCommunicator>(world, r, options));
  return comms;
}

FakeCommunicator::FakeCommunicator(std::shared_ptr<detail::FakeWorld> world, int rank,
                                   CommOptions options)
    : Communicator(std::move(options)), world_(std::move(world)), rank_(rank) {}

FakeCommunicator::~FakeCommunicator() = default;

int FakeCommunicator::size() const { return world_->n; }

const std::vector<int>& FakeCommunicator::world_ranks() const { return world_->world_ranks; }

WorkPtr FakeCommunicator::start(Call call) {
  for (const Tensor* t : {&call.in, &call.out})
    LOOM_CHECK(!t->defined() || t->device().is_cpu(), comm_op_name(call.op),
               ": the Fake communicator expects CPU tensors, got a tensor on ", t->device().str());
  if (call.op == CommOp::Send) {
    std::lock_guard<std::mutex> lock(world_->mu);
    world_->mail[{rank_, call.peer, call.tag}].push_back(bytes_of(call.in));
    world_->cv.notify_all();
    return std::make_shared<DoneWork>();
  }
  if (call.op == CommOp::Recv)
    return std::make_shared<FakeRecvWork>(world_, rank_, *this, call.fp, call.out, call.peer,
                                          call.tag);
  bool has_data = call.op != CommOp::Barrier && (call.op != CommOp::Broadcast || call.peer == rank_);
  {
    std::lock_guard<std::mutex> lock(world_->mu);
    detail::FakeSlot& slot = world_->slots[call.seq];
    if (slot.parts.empty()) slot.parts.resize(size_t(world_->n));
    detail::FakePart& part = slot.parts[size_t(rank_)];
    LOOM_INTERNAL_ASSERT(!part.present, "rank ", rank_, " deposited seq ", call.seq, " twice");
    part.present = true;
    part.fp = call.fp;
    if (has_data) part.bytes = bytes_of(call.in);
    ++slot.arrived;
    world_->cv.notify_all();
  }
  return std::make_shared<FakeCollectiveWork>(world_, rank_, *this, call.fp, call.out);
}

std::shared_ptr<Communicator> FakeCommunicator::split(int color, int key, const std::string& name) {
  int64_t seq = next_seq();
  Tensor mine = Tensor::from_vector<int64_t>({color, key}, {2});
  Tensor all = Tensor::empty({2 * int64_t(size())}, DType::I64);
  all_gather(all, mine);
  std::vector<int64_t> v = all.to_vector<int64_t>();
  if (color < 0) return nullptr;
  std::vector<std::pair<int64_t, int>> members;  // (key, parent rank) of my color
  for (int r = 0; r < size(); ++r)
    if (v[size_t(2 * r)] == color) members.emplace_back(v[size_t(2 * r + 1)], r);
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i)
    if (members[i].second == rank_) new_rank = int(i);
  std::shared_ptr<FakeWorld> child;
  {
    std::lock_guard<std::mutex> lock(world_->mu);
    auto& slot = world_->children[{seq, color}];
    if (!slot) {
      slot = std::make_shared<FakeWorld>();
      slot->n = int(members.size());
      for (const auto& m : members) slot->world_ranks.push_back(world_->world_ranks[size_t(m.second)]);
    }
    child = slot;
  }
  CommOptions opts = options();
  opts.name = name;
  return std::make_shared<FakeCommunicator>(child, new_rank, opts);
}

void run_fake_ranks(int n, const std::function<void(Communicator&)>& fn, CommOptions options) {
  auto comms = FakeCommunicator::create_world(n, std::move(options));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*comms[size_t(r)]);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace loom
