//! Data-parallel training over processes: who this process is (from torchrun's, SLURM's or plain
//! environment variables) and a c10d process group with the collectives MoCo v3 needs, through
//! the C++ shim (`csrc/dist.cpp`): Gloo for CPU tensors always, NCCL for CUDA tensors when the
//! build has it ([`NCCL_BUILD`]). One process (no variables, or a world of 1) uses none of this.

use std::ffi::{CString, c_char, c_int, c_void};

use crate::shim::ptrs;
use std::time::Duration;

use tch::Tensor;
use torch_sys::C_tensor;

use crate::Error;

unsafe extern "C" {
    fn tv_dist_init(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        client_only: c_int,
        bind: *const c_char,
        timeout_ms: i64,
        cuda_device: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn tv_dist_allreduce_(
        g: *mut c_void,
        ts: *const *mut C_tensor,
        n: usize,
        op: c_int,
    ) -> *mut c_char;
    fn tv_dist_broadcast_(
        g: *mut c_void,
        ts: *const *mut C_tensor,
        n: usize,
        root: c_int,
    ) -> *mut c_char;
    fn tv_dist_allgather(
        g: *mut c_void,
        t: *mut C_tensor,
        grad: c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn tv_dist_barrier(g: *mut c_void) -> *mut c_char;
    fn tv_dist_free(g: *mut c_void);
}

/// Whether this build has the NCCL backend, and if not why: `built in (nccl.h 2.28.9)` or
/// `not built in: <reason>` (decided by build_model.rs from the headers it found).
pub const NCCL_BUILD: &str = env!("TWOVIEW_NCCL_BUILD");

/// Whether CUDA tensors can cross processes: the NCCL backend is compiled in.
pub fn nccl_built() -> bool {
    // build_model.rs sets this cfg exactly when it compiles dist_nccl.cpp (with -DTWOVIEW_NCCL).
    cfg!(twoview_nccl)
}

fn check(op: &'static str, e: *mut c_char) -> Result<(), Error> {
    let Some(message) = crate::shim::take_error(e) else { return Ok(()) };
    let hint = if op == "rendezvous" {
        ""
    } else {
        " -- a peer process is gone (killed, crashed or unreachable) or timed out; the last \
         checkpoint is intact: relaunch every rank with --resume"
    };
    Err(Error::Dist(format!("{op}: {message}{hint}")))
}

/// This process's place in a data-parallel job, as the launcher says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Rank within this machine: the GPU `--device cuda` means.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already serves the store (`TORCHELASTIC_USE_AGENT_STORE`): every rank,
    /// rank 0 included, connects as a client.
    pub agent_store: bool,
    /// Who said so, for messages: `torchrun`, `SLURM`, `RANK/WORLD_SIZE`.
    pub source: &'static str,
}

/// The first host of a SLURM node list: `node[03-05,7],gpu1` → `node03`.
pub fn first_slurm_host(list: &str) -> String {
    let first = match list.find(['[', ',']) {
        Some(i) if list.as_bytes()[i] == b'[' => {
            let inner = &list[i + 1..list.find(']').unwrap_or(list.len())];
            let n = inner.split([',', '-']).next().unwrap_or("");
            format!("{}{n}", &list[..i])
        }
        Some(i) => list[..i].to_owned(),
        None => list.to_owned(),
    };
    first.trim().to_owned()
}

impl Launch {
    /// From the environment: torchrun / plain `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT`; else SLURM's `SLURM_PROCID`, `SLURM_NTASKS`,
    /// `SLURM_LOCALID` with the first host of `SLURM_JOB_NODELIST` (port `MASTER_PORT` or
    /// 29500). `None`: one process (no launcher, or a world of 1 unless `TWOVIEW_FORCE_GROUP=1`).
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any lookup (tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let num = |k: &str| -> Result<Option<usize>, Error> {
            var(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Dist(format!("environment variable {k}={v:?} is not a number"))
                    })
                })
                .transpose()
        };
        let (rank, world, local, source) = if let Some(w) = num("WORLD_SIZE")? {
            let source =
                if var("TORCHELASTIC_RUN_ID").is_some() { "torchrun" } else { "RANK/WORLD_SIZE" };
            (num("RANK")?.unwrap_or(0), w, num("LOCAL_RANK")?, source)
        } else if let Some(w) = num("SLURM_NTASKS")? {
            (num("SLURM_PROCID")?.unwrap_or(0), w, num("SLURM_LOCALID")?, "SLURM")
        } else {
            return Ok(None);
        };
        // TWOVIEW_FORCE_GROUP=1: a world of 1 still joins a group, so that the NCCL path can
        // be checked on a machine with one GPU (scripts/gpu-bench.sh multi).
        if world <= 1 && var("TWOVIEW_FORCE_GROUP").is_none_or(|v| v != "1") {
            return Ok(None);
        }
        if rank >= world {
            return Err(Error::Dist(format!(
                "{source}: rank {rank} is not below world size {world}"
            )));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) => a,
            None if source == "SLURM" => {
                let list = var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST"));
                list.map(|l| first_slurm_host(&l)).ok_or_else(|| {
                    Error::Dist("SLURM: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set".into())
                })?
            }
            None => return Err(Error::Dist(format!("{source}: MASTER_ADDR is not set"))),
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| Error::Dist(format!("MASTER_PORT={p:?} is not a port number")))?,
            None if source == "SLURM" => 29500,
            None => return Err(Error::Dist(format!("{source}: MASTER_PORT is not set"))),
        };
        let agent_store =
            var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True" || v == "1");
        let local_rank = local.unwrap_or(rank);
        Ok(Some(Self { rank, world, local_rank, master_addr, master_port, agent_store, source }))
    }
}

/// The device rank `l` trains on for `spec`: `cpu`; `cuda` is cuda:LOCAL_RANK, or cuda:0 when
/// the process sees a single GPU (SLURM's `--gpus-per-task=1`, or `CUDA_VISIBLE_DEVICES` set per
/// rank); `cuda:N` is taken as given.
pub fn rank_device(spec: &str, l: &Launch) -> Result<tch::Device, Error> {
    if spec != "cuda" {
        return crate::device::init(spec);
    }
    crate::device::init("cuda")?;
    let count = tch::Cuda::device_count() as usize;
    let index = if count == 1 { 0 } else { l.local_rank };
    crate::device::init(&format!("cuda:{index}")).map_err(|e| {
        Error::Dist(format!(
            "{} local rank {} wants cuda:{index}, but this process sees {count} GPUs: {e}",
            l.source, l.local_rank
        ))
    })
}

/// A process group: every collective is called by every rank in the same order.
#[derive(Debug)]
pub struct Group {
    ptr: *mut c_void,
    pub rank: usize,
    pub world: usize,
}

// SAFETY: a c10d process group is used from one thread at a time here (the trainer's), and
// c10d's groups are safe to hand between threads.
unsafe impl Send for Group {}
// SAFETY: shared only to issue collectives, which c10d serialises per group.
unsafe impl Sync for Group {}

impl Group {
    /// Joins the job `l` describes: a Gloo group for CPU tensors and, with `cuda` (a device
    /// index, made this process's current device), an NCCL group for CUDA tensors; every
    /// collective goes to the group of its tensors' device. Every collective and the rendezvous
    /// are bounded by `timeout`. A busy port, an unreachable master, a missing peer or a build
    /// without NCCL is an error naming them.
    pub fn join(l: &Launch, timeout: Duration, cuda: Option<usize>) -> Result<Self, Error> {
        if cuda.is_some() && !nccl_built() {
            return Err(Error::Dist(format!(
                "{} started {} processes on CUDA, but NCCL is {NCCL_BUILD}; run data-parallel \
                 with --device cpu, or rebuild with the headers scripts/setup-venv.sh installs",
                l.source, l.world
            )));
        }
        let host = CString::new(l.master_addr.clone())
            .map_err(|_| Error::Dist("MASTER_ADDR holds a NUL byte".into()))?;
        // Gloo binds to the address peers reach this process at: the master's own on loopback
        // (one machine), else this machine's hostname.
        let local = l.master_addr == "127.0.0.1" || l.master_addr == "localhost";
        let bind = CString::new(if local { "127.0.0.1".to_owned() } else { hostname() })
            .map_err(|_| Error::Dist("hostname holds a NUL byte".into()))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: valid C strings that outlive the call; on success `ptr` is a group the shim
        // allocated, owned by the result and freed in drop.
        let e = unsafe {
            tv_dist_init(
                host.as_ptr(),
                c_int::from(l.master_port),
                l.rank as c_int,
                l.world as c_int,
                c_int::from(l.agent_store),
                bind.as_ptr(),
                timeout.as_millis() as i64,
                cuda.map_or(-1, |d| d as c_int),
                &mut ptr,
            )
        };
        check("rendezvous", e).map_err(|e| {
            Error::Dist(format!(
                "rank {} of {} could not join the group at {}:{} ({}): {e}",
                l.rank, l.world, l.master_addr, l.master_port, l.source
            ))
        })?;
        Ok(Self { ptr, rank: l.rank, world: l.world })
    }

    fn reduce(&self, ts: &[&Tensor], op: c_int) -> Result<(), Error> {
        if ts.is_empty() {
            return Ok(());
        }
        let p = ptrs(ts);
        // SAFETY: live tensor pointers for the call; the group is alive.
        check("all_reduce", unsafe { tv_dist_allreduce_(self.ptr, p.as_ptr(), p.len(), op) })
    }

    /// Each tensor summed over ranks, in place (one coalesced collective; one dtype).
    pub fn all_reduce_sum_(&self, ts: &[&Tensor]) -> Result<(), Error> {
        self.reduce(ts, 0)
    }

    /// Each tensor's elementwise maximum over ranks, in place.
    pub fn all_reduce_max_(&self, ts: &[&Tensor]) -> Result<(), Error> {
        self.reduce(ts, 1)
    }

    /// Rank `root`'s values of every tensor, on every rank.
    pub fn broadcast_(&self, ts: &[&Tensor], root: usize) -> Result<(), Error> {
        if ts.is_empty() {
            return Ok(());
        }
        let p = ptrs(ts);
        // SAFETY: live tensor pointers for the call; the group is alive.
        check("broadcast", unsafe {
            tv_dist_broadcast_(self.ptr, p.as_ptr(), p.len(), root as c_int)
        })
    }

    /// Every rank's `t` concatenated along dim 0 in rank order; differentiable when `grad`
    /// (the backward sums every rank's gradient and keeps this rank's rows).
    pub fn all_gather(&self, t: &Tensor, grad: bool) -> Result<Tensor, Error> {
        let mut out: *mut C_tensor = std::ptr::null_mut();
        // SAFETY: a live tensor; on success `out` is a tensor the shim allocated with `new`,
        // owned from here by the returned Tensor.
        unsafe {
            check(
                "all_gather",
                tv_dist_allgather(
                    self.ptr,
                    t.as_ptr() as *mut C_tensor,
                    c_int::from(grad),
                    &mut out,
                ),
            )?;
            Ok(Tensor::from_ptr(out))
        }
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<(), Error> {
        // SAFETY: the group is alive.
        check("barrier", unsafe { tv_dist_barrier(self.ptr) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from tv_dist_init and is freed exactly once.
        unsafe { tv_dist_free(self.ptr) }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "127.0.0.1".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn vars<'a>(kv: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| kv.iter().find(|(a, _)| *a == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn launchers_are_read_from_their_variables() {
        assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(Launch::from_vars(vars(&[("WORLD_SIZE", "1"), ("RANK", "0")])).unwrap(), None);
        let forced = [
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29512"),
            ("TWOVIEW_FORCE_GROUP", "1"),
        ];
        let l = Launch::from_vars(vars(&forced)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.source), (0, 1, "RANK/WORLD_SIZE"));
        let torchrun = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29511"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RUN_ID", "x"),
        ];
        let l = Launch::from_vars(vars(&torchrun)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.master_port), (1, 2, 1, 29511));
        assert!(l.agent_store && l.source == "torchrun");
        let slurm = [
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
        ];
        let l = Launch::from_vars(vars(&slurm)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank), (5, 8, 1));
        assert_eq!((l.master_addr.as_str(), l.master_port, l.source), ("gpu07", 29500, "SLURM"));
        let err = Launch::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "0")])).unwrap_err();
        assert!(err.to_string().contains("MASTER_ADDR is not set"), "{err}");
        let err = Launch::from_vars(vars(&[("WORLD_SIZE", "two")])).unwrap_err();
        assert!(err.to_string().contains("WORLD_SIZE=\"two\""), "{err}");
        assert_eq!(first_slurm_host("node[03-05,7],gpu1"), "node03");
        assert_eq!(first_slurm_host("a1,a2"), "a1");
        assert_eq!(first_slurm_host("solo"), "solo");
    }

    /// A free TCP port on the loopback interface (bound, then released).
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// Runs `f(group)` on `world` threads, each a rank of one group on 127.0.0.1.
    pub(crate) fn on_ranks<R: Send + 'static>(
        world: usize,
        f: impl Fn(std::sync::Arc<Group>) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let port = free_port();
        let f = std::sync::Arc::new(f);
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let l = Launch {
                        rank,
                        world,
                        local_rank: rank,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        agent_store: false,
                        source: "test",
                    };
                    let g = Group::join(&l, Duration::from_secs(30), None).unwrap();
                    f(std::sync::Arc::new(g))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// A group joined with a CUDA device: on a machine without one (CI) a clear error, never a
    /// crash or a hang; with one, CUDA tensors cross through NCCL and CPU ones through Gloo.
    #[test]
    fn a_cuda_group_needs_nccl_and_a_gpu() {
        let l = Launch {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: free_port(),
            agent_store: false,
            source: "test",
        };
        let joined = Group::join(&l, Duration::from_secs(30), Some(0));
        let gpu = crate::device::init("cuda:0").is_ok();
        match joined {
            Err(e) if !nccl_built() => {
                assert!(e.to_string().contains("NCCL is not built in"), "{e}");
                assert!(NCCL_BUILD.starts_with("not built in: "), "{NCCL_BUILD}");
            }
            Err(e) => {
                assert!(!gpu, "NCCL is built and cuda:0 works, yet joining failed: {e}");
                eprintln!("without a GPU, as expected: {e}");
                assert!(NCCL_BUILD.starts_with("built in (nccl.h "), "{NCCL_BUILD}");
            }
            Ok(g) => {
                assert!(gpu && nccl_built());
                let on_gpu = Tensor::from_slice(&[1.5f32, 2.0]).to_device(tch::Device::Cuda(0));
                let on_cpu = Tensor::from_slice(&[3.0f64]);
                g.all_reduce_sum_(&[&on_gpu, &on_cpu]).unwrap();
                g.broadcast_(&[&on_gpu, &on_cpu], 0).unwrap();
                let all = g.all_gather(&on_gpu.view([1, 2]), false).unwrap();
                assert_eq!(
                    Vec::<f32>::try_from(all.reshape([-1]).to_device(tch::Device::Cpu)).unwrap(),
                    vec![1.5, 2.0]
                );
                g.barrier().unwrap();
            }
        }
    }

    #[test]
    fn collectives_on_two_ranks_over_loopback() {
        let out = on_ranks(2, |g| {
            let r = g.rank as f32;
            let a = Tensor::from_slice(&[r + 1.0, 10.0 * r]);
            let b = Tensor::from_slice(&[r]);
            g.all_reduce_sum_(&[&a, &b]).unwrap();
            let m = Tensor::from_slice(&[r, -r]);
            g.all_reduce_max_(&[&m]).unwrap();
            let c = Tensor::from_slice(&[r * 7.0, r]);
            let d = Tensor::from_slice(&[r + 3.0]).view([1, 1]);
            g.broadcast_(&[&c, &d], 1).unwrap();
            let x = Tensor::from_slice(&[r, r + 0.5]).view([1, 2]).set_requires_grad(true);
            let all = g.all_gather(&x, true).unwrap();
            // Each rank's loss weighs the rows differently; the gradient of rank r's x is the
            // sum over ranks of d(loss_s)/d(x_r).
            let w = Tensor::from_slice(&[1.0f32 + r, 2.0 + r]).view([2, 1]);
            (&all * w).sum(tch::Kind::Float).backward();
            g.barrier().unwrap();
            let v = |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap();
            (v(&a), v(&b), v(&m), v(&c), v(&d), v(&x.grad()), v(&all.detach()))
        });
        for (rank, (a, b, m, c, d, gx, all)) in out.into_iter().enumerate() {
            assert_eq!((a, b, m), (vec![3.0, 10.0], vec![1.0], vec![1.0, 0.0]), "rank {rank}");
            assert_eq!((c, d), (vec![7.0, 1.0], vec![4.0]), "rank {rank}: rank 1's values");
            assert_eq!(all, vec![0.0, 0.5, 1.0, 1.5], "rank {rank}: rows in rank order");
            // Rank 0's row has weight 1 on rank 0 and 2 on rank 1: 3; rank 1's row 2 + 3 = 5.
            let want = if rank == 0 { 3.0 } else { 5.0 };
            assert_eq!(gx, vec![want, want], "rank {rank}");
        }
    }
}
