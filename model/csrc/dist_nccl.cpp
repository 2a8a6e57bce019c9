// The NCCL half of dist.cpp: a ProcessGroupNCCL for CUDA tensors. Compiled only when the build
// finds the headers of the versions the torch wheel pins (build_model.rs): nccl.h of
// nvidia-nccl-cu13 at torch's version -- another one changes ProcessGroupNCCL::Options' layout --
// and the CUDA 13.0 headers (nvidia/cu13/include, with crt/ and nv/target from the
// nvidia-cuda-crt and nvidia-cuda-cccl wheels). Built with -DUSE_C10D_NCCL -DUSE_CUDA.

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

// An NCCL group of `world` ranks on CUDA device `device`, which becomes this thread's current
// device (tch has no set-device): bound to it, and its communicator made now (eagerly, as
// torch.distributed.init_process_group(device_id=...) does), so that a missing peer fails here
// and not at the first step.
c10::intrusive_ptr<c10d::Backend> tv_nccl_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                int rank, int world,
                                                std::chrono::milliseconds timeout, int device) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
  at::Device d(at::kCUDA, static_cast<c10::DeviceIndex>(device));
  pg->setBoundDeviceId(d);
  pg->eagerConnectSingleDevice(d);
  return pg;
}
