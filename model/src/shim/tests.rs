use tch::{Device, Kind};

use super::*;

fn rand(shapes: &[&[i64]]) -> Vec<Tensor> {
    shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect()
}

fn refs(v: &[Tensor]) -> Vec<&Tensor> {
    v.iter().collect()
}

#[test]
fn fused_adamw_is_adamw_and_found_inf_skips_it() {
    let _rng = crate::torch_rng();
    tch::manual_seed(3);
    let shapes: [&[i64]; 3] = [&[4, 5], &[7], &[2, 3, 3]];
    let params = rand(&shapes);
    let grads = rand(&shapes);
    let (m, v): (Vec<Tensor>, Vec<Tensor>) =
        params.iter().map(|p| (p.zeros_like(), p.zeros_like())).unzip();
    let start: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
    let h = AdamwStep { lr: 0.01, beta1: 0.9, beta2: 0.999, weight_decay: 0.1, eps: 1e-8 };
    let mut step = Tensor::from_slice(&[1.0f32]);
    fused_adamw_(&refs(&params), &refs(&grads), &refs(&m), &refs(&v), &step, h, None).unwrap();
    for (i, ((p, p0), g)) in params.iter().zip(&start).zip(&grads).enumerate() {
        // AdamW's first step by hand: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g².
        let expect = p0 * (1.0 - 0.01 * 0.1) - g * 0.01 / (g.abs() + 1e-8);
        let d = (p - &expect).abs().max().double_value(&[]);
        assert!(d < 1e-6, "tensor {i}: off by {d}");
    }
    let after: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
    let inf = Tensor::from_slice(&[1.0f32]);
    let _ = step.fill_(2.0);
    fused_adamw_(&refs(&params), &refs(&grads), &refs(&m), &refs(&v), &step, h, Some(&inf))
        .unwrap();
    for (p, a) in params.iter().zip(&after) {
        assert!(p.equal(a), "found_inf = 1 applies nothing");
    }
    let err =
        fused_adamw_(&refs(&params), &refs(&grads[..2]), &refs(&m), &refs(&v), &step, h, None)
            .unwrap_err();
    assert!(err.to_string().contains("different lengths"), "{err}");
}

#[test]
fn foreach_ops_and_the_op_counter() {
    let _rng = crate::torch_rng();
    tch::manual_seed(4);
    let shapes: Vec<&[i64]> =
        (0..40).map(|i| if i % 2 == 0 { &[3, 4][..] } else { &[5][..] }).collect();
    let a = rand(&shapes);
    let b = rand(&shapes);
    let expect: Vec<Tensor> = a.iter().zip(&b).map(|(x, y)| x + (y - x) * 0.25).collect();
    let ((), n) = count_ops(|| foreach_lerp_(&refs(&a), &refs(&b), 0.25).unwrap()).unwrap();
    assert_eq!(
        n,
        OpCount { ops: 1, host_reads: 0 },
        "one multi-tensor op, whatever it runs inside"
    );
    for (x, e) in a.iter().zip(&expect) {
        assert!(x.allclose(e, 1e-6, 1e-6, false));
    }
    let (norms, n) = count_ops(|| foreach_norm(&refs(&a)).unwrap()).unwrap();
    assert!(n.ops <= 2 && n.host_reads == 0, "norms and their stack: {n:?}");
    let (_, n) = count_ops(|| norms.double_value(&[0])).unwrap();
    assert!(n.host_reads >= 1, "reading a value is seen: {n:?}");
    let one = a[3].norm().double_value(&[]);
    assert!((norms.double_value(&[3]) - one).abs() < 1e-5);
    let ((), n) = count_ops(|| {
        for x in &a {
            let _ = x * 2.0;
        }
    })
    .unwrap();
    assert!(n.ops >= 40, "one op per tensor counted: {n:?}");
    foreach_mul_(&refs(&a), &Tensor::from_slice(&[0.0f32])).unwrap();
    assert!(a.iter().all(|x| x.abs().sum(Kind::Float).double_value(&[]) == 0.0));
    foreach_copy_(&refs(&a), &refs(&b)).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.equal(y)));
    foreach_zero_(&refs(&a)).unwrap();
    assert!(a.iter().all(|x| x.abs().sum(Kind::Float).double_value(&[]) == 0.0));
}

#[test]
fn pinned_memory_is_pinned_or_an_error() {
    match empty_pinned(4096) {
        Ok(t) => assert!(tch::Cuda::is_available() && t.is_pinned(Device::Cpu)),
        Err(e) => {
            assert!(!tch::Cuda::is_available(), "CUDA present but pinning failed: {e}");
            assert!(e.to_string().starts_with("libtorch empty(pin_memory=True)"), "{e}");
        }
    }
}
