// The libtorch calls tch 0.24 does not expose, for twoview-model (model/src/shim.rs):
// libtorch's multi-tensor optimizer ops (_fused_adamw_, _foreach_*), pinned host memory from
// libtorch's own allocator, device events on the current stream, and a counter of the ATen ops
// a thread dispatches (RecordFunction). Compiled against the torch wheel's headers by
// model/build_model.rs with the flags of ../shared/DISTRIBUTED.md.
//
// Every function catches C++ exceptions and returns them as a malloc'd message (nullptr on
// success); the Rust side frees it with tv_free_error. Tensors are tch's C_tensor, which is a
// torch::Tensor* (libtch/torch_api.h).

#include "tv.h"
#include <ATen/record_function.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <vector>

namespace {

thread_local int64_t op_depth = 0;
thread_local int64_t op_count = 0;
thread_local bool op_counting = false;
thread_local int64_t read_count = 0;
thread_local at::CallbackHandle op_handle = 0;

// Ops that copy a value to the host and so wait for the device: item(), bool(), .tolist().
bool reads_the_device(const char* name) {
  return std::strcmp(name, "aten::_local_scalar_dense") == 0 ||
         std::strcmp(name, "aten::item") == 0 || std::strcmp(name, "aten::is_nonzero") == 0;
}

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction& fn) {
  if (op_depth++ == 0) {
    ++op_count;
    if (reads_the_device(fn.name())) ++read_count;
  }
  return nullptr;
}

void on_op_end(const at::RecordFunction&, at::ObserverContext*) { --op_depth; }

}  // namespace

extern "C" {

void tv_free_error(char* e) { free(e); }

// AdamW over n tensors in one multi-tensor kernel chain (torch.optim.AdamW(fused=True)).
// `step` is one float tensor shared by all n (incremented by the caller); `found_inf`, when not
// null, is a one-element float tensor: 1 skips the whole update, as GradScaler's does.
char* tv_fused_adamw_(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                      at::Tensor** exp_avg_sqs, size_t n, at::Tensor* step, double lr,
                      double beta1, double beta2, double weight_decay, double eps,
                      at::Tensor* found_inf) {
  TV_TRY({
    std::vector<at::Tensor> steps(n, *step);
    std::optional<at::Tensor> inf;
    if (found_inf) inf = *found_inf;
    at::_fused_adamw_(tv::list(params, n), tv::list(grads, n), tv::list(exp_avgs, n), tv::list(exp_avg_sqs, n),
                      {}, steps, lr, beta1, beta2, weight_decay, eps, false, false, std::nullopt,
                      inf);
  })
}

// self[i] += weight * (end[i] - self[i]) for all i: the momentum-encoder update.
char* tv_foreach_lerp_(at::Tensor** self, at::Tensor** end, size_t n, double weight) {
  TV_TRY(at::_foreach_lerp_(tv::list(self, n), tv::list(end, n), at::Scalar(weight)))
}

// self[i].copy_(src[i]) for all i.
char* tv_foreach_copy_(at::Tensor** self, at::Tensor** src, size_t n) {
  TV_TRY(at::_foreach_copy_(tv::list(self, n), tv::list(src, n), false))
}

// The L2 norm of every tensor, stacked into one fp32 tensor [n] on their device.
char* tv_foreach_norm(at::Tensor** ts, size_t n, at::Tensor** out) {
  TV_TRY({
    auto norms = at::_foreach_norm(tv::list(ts, n), 2, at::kFloat);
    *out = new at::Tensor(at::stack(norms));
  })
}

// self[i].zero_() for all i.
char* tv_foreach_zero_(at::Tensor** self, size_t n) { TV_TRY(at::_foreach_zero_(tv::list(self, n))) }

// self[i] *= factor (a one-element tensor on their device) for all i: clipping.
char* tv_foreach_mul_(at::Tensor** self, size_t n, at::Tensor* factor) {
  TV_TRY(at::_foreach_mul_(tv::list(self, n), factor->reshape({})))
}

// `bytes` bytes of page-locked host memory from libtorch's pinned allocator (the CUDA caching
// host allocator when CUDA is loaded); an error, never a silent pageable fallback.
char* tv_empty_pinned(int64_t bytes, at::Tensor** out) {
  TV_TRY({
    auto t = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    if (!t.is_pinned()) throw std::runtime_error("libtorch returned unpinned memory");
    *out = new at::Tensor(std::move(t));
  })
}

// An event recorded on the current stream of CUDA device `index`: complete once everything
// queued on that stream before it (a host-to-device copy) has run.
char* tv_event_record(int64_t index, void** out) {
  TV_TRY({
    c10::Device device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
    auto stream = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(device);
    auto* ev = new c10::Event(c10::DeviceType::CUDA);
    ev->record(stream);
    *out = ev;
  })
}

char* tv_event_query(void* ev, int* done) {
  TV_TRY(*done = static_cast<c10::Event*>(ev)->query() ? 1 : 0)
}

char* tv_event_synchronize(void* ev) { TV_TRY(static_cast<c10::Event*>(ev)->synchronize()) }

void tv_event_free(void* ev) { delete static_cast<c10::Event*>(ev); }

// Counts the top-level ATen ops this thread dispatches between start and stop (ops called by
// other ops are not counted: a _foreach op is one, whatever it runs inside), and those of them
// that read a value back to the host. Reads inside an op are the backend's own (the CPU fused
// AdamW reads its step count per tensor; the CUDA kernel reads it on the device).
char* tv_op_counter_start() {
  TV_TRY({
    if (op_counting) throw std::runtime_error("the op counter is already running");
    op_depth = 0;
    op_count = 0;
    read_count = 0;
    op_handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(on_op_start, on_op_end).scopes({at::RecordScope::FUNCTION}));
    op_counting = true;
  })
}

char* tv_op_counter_stop(int64_t* count, int64_t* reads) {
  TV_TRY({
    if (!op_counting) throw std::runtime_error("the op counter is not running");
    at::removeCallback(op_handle);
    op_counting = false;
    *count = op_count;
    *reads = read_count;
  })
}

}  // extern "C"
