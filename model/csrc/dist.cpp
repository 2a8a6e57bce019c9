// Data-parallel collectives for twoview-model (model/src/dist.rs), on libtorch's own c10d: a
// TCPStore rendezvous (rank 0 serves it, or torchrun's agent does), a Gloo process group, and
// the few collectives MoCo v3 needs -- coalesced all-reduce, broadcast, all-gather (with an
// autograd form for SyncBatchNorm statistics) and barrier. Built with -DUSE_C10D_GLOO against
// the torch wheel's headers and Debian's gloo headers (../shared/DISTRIBUTED.md).
//
// As shim.cpp: every function returns nullptr or a malloc'd message.

#include "tv.h"
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int rank;
  int world;
};

at::Tensor gather(Group* g, const at::Tensor& t) {
  auto in = t.contiguous();
  auto sizes = in.sizes().vec();
  sizes[0] *= g->world;
  auto out = at::empty(sizes, in.options());
  g->pg->_allgather_base(out, in)->wait();
  return out;
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
    g->pg->allreduce(all)->wait();
    return {all[0].narrow(0, rows * g->rank, rows), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Joins the group of `world` processes as `rank`: rendezvous on host:port (rank 0 serves the
// store unless `client_only`, torchrun's agent store), then a Gloo group bound to `bind` (this
// machine's address that peers can reach). `timeout_ms` bounds the rendezvous and every
// collective.
char* tv_dist_init(const char* host, int port, int rank, int world, int client_only,
                   const char* bind, int64_t timeout_ms, void** out) {
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
    *out = new Group{store, pg, rank, world};
  })
}

// Sums (op 0) or takes the maximum (op 1) of each tensor over ranks, in place, in one
// coalesced collective (the tensors must share dtype and device).
char* tv_dist_allreduce_(void* g, at::Tensor** ts, size_t n, int op) {
  TV_TRY({
    auto v = tv::list(ts, n);
    c10d::AllreduceCoalescedOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    static_cast<Group*>(g)->pg->allreduce_coalesced(v, o)->wait();
  })
}

// Rank `root`'s values of every tensor, on every rank (one flat broadcast).
char* tv_dist_broadcast_(void* g, at::Tensor** ts, size_t n, int root) {
  TV_TRY({
    auto v = tv::list(ts, n);
    std::vector<at::Tensor> flat_parts;
    for (auto& t : v) flat_parts.push_back(t.detach().reshape({-1}));
    std::vector<at::Tensor> flat{at::cat(flat_parts)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    static_cast<Group*>(g)->pg->broadcast(flat, o)->wait();
    int64_t off = 0;
    at::NoGradGuard no_grad;
    for (auto& t : v) {
      auto n_el = t.numel();
      t.copy_(flat[0].narrow(0, off, n_el).view(t.sizes()));
      off += n_el;
    }
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

char* tv_dist_barrier(void* g) { TV_TRY(static_cast<Group*>(g)->pg->barrier()->wait()) }

void tv_dist_free(void* g) {
  auto* group = static_cast<Group*>(g);
  try {
    group->pg->shutdown();
  } catch (...) {
  }
  delete group;
}

}  // extern "C"
