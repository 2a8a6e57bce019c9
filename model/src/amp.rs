//! Mixed precision through libtorch's autocast, with the dtype chosen (bf16).
//!
//! tch's `autocast` can neither pick the dtype nor act on CPU, so we call libtorch's
//! `at::autocast::{set_autocast_enabled, set_autocast_dtype, is_autocast_enabled}` directly by
//! their mangled names (stable in torch 2.11; `c10::DeviceType` and `c10::ScalarType` are
//! `int8_t` enums, passed as such).

use tch::{Device, Kind};

mod ffi {
    // SAFETY (of the declarations): the signatures are those of torch 2.11's
    // `at::autocast` functions; both enums are `enum class : int8_t`.
    unsafe extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i64;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i64;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
        /// `at::globalContext()`: a reference to the process-wide `at::Context`.
        #[link_name = "_ZN2at13globalContextEv"]
        pub fn global_context() -> *mut std::ffi::c_void;
        /// Member functions: `this` comes first (Itanium C++ ABI).
        #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
        pub fn set_allow_tf32_cublas(ctx: *mut std::ffi::c_void, allow: bool);
        #[link_name = "_ZN2at7Context17setAllowTF32CuDNNEb"]
        pub fn set_allow_tf32_cudnn(ctx: *mut std::ffi::c_void, allow: bool);
        #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
        pub fn allow_tf32_cublas(ctx: *mut std::ffi::c_void) -> bool;
    }
}

fn device_type(d: Device) -> i8 {
    match d {
        Device::Cuda(_) => 1,
        _ => 0,
    }
}

fn scalar_type(k: Kind) -> i8 {
    match k {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => panic!("autocast dtype must be Half, Float or BFloat16, not {other:?}"),
    }
}

/// Autocast on `device`'s type with `kind` while the guard lives ([`Autocast::new`]), or off
/// ([`Autocast::off`]); the previous state (enabled flag and dtype) comes back on drop.
/// Autocast state is thread-local in libtorch, so the guard is neither `Send` nor `Sync`: it is
/// created and dropped on the thread that runs the forward pass.
#[derive(Debug)]
pub struct Autocast {
    device: i8,
    was_enabled: bool,
    was_dtype: i8,
    /// Whether this guard entered a nesting level (and so leaves it).
    nested: bool,
    _thread_bound: std::marker::PhantomData<*const ()>,
}

impl Autocast {
    /// Autocast to `kind` on `device`'s type.
    pub fn new(device: Device, kind: Kind) -> Self {
        let (dt, st) = (device_type(device), scalar_type(kind));
        // SAFETY: plain calls into libtorch with valid enum values.
        unsafe {
            let (was_enabled, was_dtype) =
                (ffi::is_autocast_enabled(dt), ffi::get_autocast_dtype(dt));
            ffi::set_autocast_dtype(dt, st);
            ffi::set_autocast_enabled(dt, true);
            ffi::increment_nesting();
            Self {
                device: dt,
                was_enabled,
                was_dtype,
                nested: true,
                _thread_bound: std::marker::PhantomData,
            }
        }
    }

    /// Autocast off on `device`'s type (a region that must run in the tensors' own precision,
    /// e.g. the contrastive logits), whatever an outer guard set.
    pub fn off(device: Device) -> Self {
        let dt = device_type(device);
        // SAFETY: plain calls into libtorch with a valid enum value.
        unsafe {
            let (was_enabled, was_dtype) =
                (ffi::is_autocast_enabled(dt), ffi::get_autocast_dtype(dt));
            ffi::set_autocast_enabled(dt, false);
            Self {
                device: dt,
                was_enabled,
                was_dtype,
                nested: false,
                _thread_bound: std::marker::PhantomData,
            }
        }
    }

    /// Whether autocast is on for `device`'s type in this thread.
    pub fn is_enabled(device: Device) -> bool {
        // SAFETY: a plain query.
        unsafe { ffi::is_autocast_enabled(device_type(device)) }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: undoes what `new`/`off` did, on the same thread (the guard is not `Send`).
        unsafe {
            if self.nested && ffi::decrement_nesting() == 0 {
                ffi::clear_cache();
            }
            ffi::set_autocast_dtype(self.device, self.was_dtype);
            ffi::set_autocast_enabled(self.device, self.was_enabled);
        }
    }
}

/// TF32 for CUDA matmuls and convolutions (`torch.backends.cuda.matmul.allow_tf32` and
/// `torch.backends.cudnn.allow_tf32`). Harmless without CUDA.
pub fn set_tf32(allow: bool) {
    // SAFETY: globalContext() returns a valid, process-lifetime object; the setters take it as
    // `this`.
    unsafe {
        let ctx = ffi::global_context();
        ffi::set_allow_tf32_cublas(ctx, allow);
        ffi::set_allow_tf32_cudnn(ctx, allow);
    }
}

/// Whether TF32 is allowed for CUDA matmuls.
pub fn tf32() -> bool {
    // SAFETY: as in `set_tf32`.
    unsafe { ffi::allow_tf32_cublas(ffi::global_context()) }
}

/// The precision of an evaluation's forward passes. It follows the device the evaluation runs
/// on, never the training run's setting: a run trained with bf16 on a GPU and evaluated on a
/// CPU is evaluated in fp32 unless asked otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalPrecision {
    /// bf16 autocast on CUDA, fp32 elsewhere.
    Auto,
    /// fp32 everywhere.
    Fp32,
    /// bf16 autocast, on any device.
    Bf16,
}

impl EvalPrecision {
    /// Whether forward passes on `device` run under bf16 autocast.
    pub fn autocast(self, device: Device) -> bool {
        match self {
            Self::Auto => device.is_cuda(),
            Self::Fp32 => false,
            Self::Bf16 => true,
        }
    }

    /// `fp32` or `bf16`, as used on `device`.
    pub fn name(self, device: Device) -> &'static str {
        if self.autocast(device) { "bf16" } else { "fp32" }
    }
}

impl std::str::FromStr for EvalPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "fp32" => Ok(Self::Fp32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(format!("{s:?}: expected auto, fp32 or bf16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn cpu_autocast_runs_matmul_in_bf16_and_restores() {
        let a = Tensor::ones([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([8, 2], (Kind::Float, Device::Cpu));
        assert!(!Autocast::is_enabled(Device::Cpu));
        {
            let _g = Autocast::new(Device::Cpu, Kind::BFloat16);
            assert!(Autocast::is_enabled(Device::Cpu));
            let c = a.matmul(&b);
            assert_eq!(c.kind(), Kind::BFloat16);
            assert_eq!(c.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]), 64.0);
            // Ops autocast keeps in fp32 stay there.
            assert_eq!(a.log_softmax(1, None).kind(), Kind::Float);
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn guards_restore_flag_and_dtype_and_off_turns_autocast_off() {
        // SAFETY: a plain query.
        let dtype = || unsafe { ffi::get_autocast_dtype(device_type(Device::Cpu)) };
        let before = dtype();
        {
            let _half = Autocast::new(Device::Cpu, Kind::Half);
            assert_eq!(dtype(), scalar_type(Kind::Half));
            {
                let _bf = Autocast::new(Device::Cpu, Kind::BFloat16);
                assert_eq!(dtype(), scalar_type(Kind::BFloat16));
                let _off = Autocast::off(Device::Cpu);
                assert!(!Autocast::is_enabled(Device::Cpu));
                let a = tch::Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
                assert_eq!(a.matmul(&a).kind(), Kind::Float);
            }
            assert!(Autocast::is_enabled(Device::Cpu));
            assert_eq!(dtype(), scalar_type(Kind::Half), "the inner guard restored the dtype");
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(dtype(), before);
    }

    #[test]
    fn eval_precision_follows_the_eval_device() {
        let cuda = Device::Cuda(0);
        assert!(!EvalPrecision::Auto.autocast(Device::Cpu));
        assert!(EvalPrecision::Auto.autocast(cuda));
        assert!(!EvalPrecision::Fp32.autocast(cuda));
        assert!(EvalPrecision::Bf16.autocast(Device::Cpu));
        assert_eq!("bf16".parse::<EvalPrecision>(), Ok(EvalPrecision::Bf16));
        assert!("fp16".parse::<EvalPrecision>().unwrap_err().contains("fp16"));
    }

    #[test]
    fn tf32_flag_round_trips() {
        let before = tf32();
        set_tf32(true);
        assert!(tf32());
        set_tf32(false);
        assert!(!tf32());
        set_tf32(before);
    }
}
