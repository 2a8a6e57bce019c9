// Data-parallel collectives for twoview-model (model/src/dist.rs), on libtorch's own c10d: a
// TCPStore rendezvous (rank 0 serves it, or torchrun's agent does), a Gloo process group for CPU
// tensors, an NCCL group for CUDA tensors when the build has it (dist_nccl.cpp, -DTWOVIEW_NCCL),
// and the few collectives MoCo v3 needs -- coalesced all-reduce, broadcast, all-gather (with an
// autograd form for SyncBatchNorm statistics) and barrier. Each collective goes to the group of
// its tensors' device, as a Python ProcessGroup with a "cpu:gloo,cuda:nccl" backend does. Built
// with -DUSE_C10D_GLOO against the torch wheel's headers and Debian's gloo headers
// (../shared/DISTRIBUTED.md).
//
// As shim.cpp: every function returns nullptr or a malloc'd message.

#include "tv.h"
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <vector>

// libtorch 2.11's FlightRecorder (the per-collective trace behind TORCH_NCCL_DUMP_ON_TIMEOUT)
// inserts into a process-wide map before it takes its lock: groups recording at the same time --
// ranks on threads of one process, as the tests run them -- race on it and crash (seen: a
// SIGSEGV in std::_Rb_tree_insert_and_rebalance under ProcessGroupGloo::enqueue, ~5 % of test
// runs). It also captures a traceback per collective. So it is off unless the user turns it on
// (TORCH_FR_BUFFER_SIZE=N is respected): set while the program starts, one thread running, before
// any group reads it (the recorder reads the variable once, when first used).
static const int flight_recorder_off = setenv("TORCH_FR_BUFFER_SIZE", "0", 0);

#ifdef TWOVIEW_NCCL
// dist_nccl.cpp: an NCCL group bound to CUDA device `device` (made current first).
c10::intrusive_ptr<c10d::Backend> tv_nccl_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                int rank, int world,
                                                std::chrono::milliseconds timeout, int device);
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
  // Null unless the group was joined with a CUDA device.
  c10::intrusive_ptr<c10d::Backend> nccl;
  int rank;
  int world;

  // The backend for tensors on `t`'s device.
  c10d::Backend& on(const at::Tensor& t) {
    if (!t.is_cuda()) return *gloo;
    if (!nccl)
      throw std::runtime_error(
          "a CUDA tensor reached a collective of a group joined without a CUDA device (Gloo "
          "only)");
    return *nccl;
  }
};

at::Tensor gather(Group* g, const at::Tensor& t) {
  auto in = t.contiguous();
  auto sizes = in.sizes().vec();
  sizes[0] *= g->world;
  auto out = at::empty(sizes, in.options());
  g->on(in)._allgather_base(out, in)->wait();
  return out;
}

// The tensors of `v` on CPU and those on CUDA, each list in its original order.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> by_device(
    const std::vector<at::Tensor>& v) {
  std::vector<at::Tensor> cpu, cuda;
  for (const auto& t : v) (t.is_cuda() ? cuda : cpu).push_back(t);
  return {std::move(cpu), std::move(cuda)};
}

// all_gather along dim 0 with a gradient: backward sums every rank's gradient of the gathered
// tensor (an all-reduce) and keeps this rank's rows -- the reduce-scatter of the sum.
struct AllGather : public torch::autograd::Function<AllGather> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& t,
                            int64_t group) {
    auto* g = reinterpret_cast<Group*>(group);
    ctx->saved_data["group"] = group;
    ctx->saved_data["rows"] = t.size(0);
    return gather(g, t);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    int64_t rows = ctx->saved_data["rows"].toInt();
    std::vector<at::Tensor> all{grads[0].contiguous().clone()};
    g->on(all[0]).allreduce(all)->wait();
    return {all[0].narrow(0, rows * g->rank, rows), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Joins the group of `world` processes as `rank`: rendezvous on host:port (rank 0 serves the
// store unless `client_only`, torchrun's agent store), then a Gloo group bound to `bind` (this
// machine's address that peers can reach) and, with `cuda_device` >= 0, an NCCL group on that
// device. `timeout_ms` bounds the rendezvous and every collective.
char* tv_dist_init(const char* host, int port, int rank, int world, int client_only,
                   const char* bind, int64_t timeout_ms, int cuda_device, void** out) {
  TV_TRY({
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0 && !client_only;
    opts.numWorkers = world;
    // Every rank counts itself in and waits for all `world` (as Python's TCPStore does).
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto prefix = c10::make_intrusive<c10d::PrefixStore>("twoview/0/", store);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind));
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefix, rank, world, options);
    c10::intrusive_ptr<c10d::Backend> nccl;
    if (cuda_device >= 0) {
#ifdef TWOVIEW_NCCL
      auto nccl_prefix = c10::make_intrusive<c10d::PrefixStore>("twoview/1/", store);
      nccl = tv_nccl_group(nccl_prefix, rank, world, timeout, cuda_device);
#else
      throw std::runtime_error("this build has no NCCL backend (twoview info says why)");
#endif
    }
    *out = new Group{store, pg, nccl, rank, world};
  })
}

// Sums (op 0) or takes the maximum (op 1) of each tensor over ranks, in place, in one
// coalesced collective per device (CPU tensors on Gloo, CUDA ones on NCCL; one dtype each).
char* tv_dist_allreduce_(void* g, at::Tensor** ts, size_t n, int op) {
  TV_TRY({
    auto* group = static_cast<Group*>(g);
    c10d::AllreduceCoalescedOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    auto [cpu, cuda] = by_device(tv::list(ts, n));
    for (auto* part : {&cpu, &cuda})
      if (!part->empty()) group->on(part->front()).allreduce_coalesced(*part, o)->wait();
  })
}

// Rank `root`'s values of every tensor of `v` (one device, one dtype), in one flat broadcast.
void broadcast_flat(Group* g, const std::vector<at::Tensor>& v, int root) {
  std::vector<at::Tensor> flat_parts;
  for (auto& t : v) flat_parts.push_back(t.detach().reshape({-1}));
  std::vector<at::Tensor> flat{at::cat(flat_parts)};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  g->on(flat[0]).broadcast(flat, o)->wait();
  int64_t off = 0;
  at::NoGradGuard no_grad;
  for (auto& t : v) {
    auto n_el = t.numel();
    t.copy_(flat[0].narrow(0, off, n_el).view(t.sizes()));
    off += n_el;
  }
}

// Rank `root`'s values of every tensor, on every rank (one flat broadcast per device).
char* tv_dist_broadcast_(void* g, at::Tensor** ts, size_t n, int root) {
  TV_TRY({
    auto [cpu, cuda] = by_device(tv::list(ts, n));
    for (auto* part : {&cpu, &cuda})
      if (!part->empty()) broadcast_flat(static_cast<Group*>(g), *part, root);
  })
}

// Every rank's `t` stacked along dim 0 in rank order; with `grad`, differentiable.
char* tv_dist_allgather(void* g, at::Tensor* t, int grad, at::Tensor** out) {
  TV_TRY({
    auto* group = static_cast<Group*>(g);
    at::Tensor r = grad ? AllGather::apply(*t, reinterpret_cast<int64_t>(group)) : gather(group, *t);
    *out = new at::Tensor(std::move(r));
  })
}

// Every rank has reached this point (a host-side barrier, on Gloo).
char* tv_dist_barrier(void* g) { TV_TRY(static_cast<Group*>(g)->gloo->barrier()->wait()) }

void tv_dist_free(void* g) {
  auto* group = static_cast<Group*>(g);
  for (auto* b : {&group->nccl, &group->gloo}) {
    try {
      if (*b) (*b)->shutdown();
    } catch (...) {
    }
  }
  delete group;
}

}  // extern "C"
