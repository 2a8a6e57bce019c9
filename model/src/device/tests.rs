use super::*;

#[test]
fn cpu_is_always_available_and_computes() {
    let device = init("cpu").unwrap();
    assert_eq!(device, Device::Cpu);
    // A real libtorch op through tch: (A @ B) against the hand-computed product.
    let a = tch::Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]);
    let b = tch::Tensor::from_slice(&[5f32, 6., 7., 8.]).reshape([2, 2]);
    let c = Vec::<f32>::try_from(a.matmul(&b).flatten(0, -1)).unwrap();
    assert_eq!(c, vec![19., 22., 43., 50.]);
}

#[test]
fn bad_device_strings_are_rejected_with_the_input() {
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
        let err = init(bad).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn cuda_request_matches_what_libtorch_reports() {
    // On a machine without a GPU this must be a clear error, never a panic; with one, a device.
    match init("cuda:0") {
        Ok(d) => assert_eq!(d, Device::Cuda(0)),
        Err(e) => {
            assert!(!tch::Cuda::is_available() || tch::Cuda::device_count() == 0);
            assert!(e.to_string().contains("cuda:0"), "{e}");
        }
    }
}
