use super::*;
use crate::config::TrainConfig;

fn state(step: u64) -> RunState {
    RunState {
        version: STATE_VERSION,
        step,
        cursor: Cursor { epoch: 1, batch: step },
        plan: TrainConfig::default().plan(1000, Device::Cpu).unwrap(),
        optimizer_steps: step as i64,
        data: Some(DataIdentity { manifest_checksum: "00ff".into(), train_rows: 1000 }),
        recipe: Some(serde_json::json!({ "name": "mocov3_vit" })),
    }
}

fn one(v: f32) -> Vec<(String, Tensor)> {
    vec![("a.b".to_owned(), Tensor::from_slice(&[v, 1.5]))]
}

#[test]
fn save_keeps_newest_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    for step in [10u64, 20, 30] {
        save(&root, step, &one(step as f32), &state(step), 2).unwrap();
    }
    let mut steps = list(&root).unwrap();
    steps.sort_unstable();
    assert_eq!(steps, [20, 30]);
    // A leftover temporary and an incomplete folder are not checkpoints.
    fs::create_dir_all(root.join(".tmp-step-00000040-1")).unwrap();
    fs::create_dir_all(root.join("step-00000050")).unwrap();
    let l = load_dir(&latest(&root).unwrap().unwrap(), Device::Cpu).unwrap();
    assert_eq!(l.step, 30);
    assert_eq!(l.state, state(30));
    assert_eq!(Vec::<f32>::try_from(&l.tensors["a.b"]).unwrap(), [30.0, 1.5]);
    clean_temporaries(&root);
    assert!(!root.join(".tmp-step-00000040-1").exists());
}

#[test]
fn saving_a_step_again_replaces_it_in_one_move() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    let first = save(&root, 7, &one(1.0), &state(7), 1).unwrap();
    let again = save(&root, 7, &one(2.0), &state(7), 1).unwrap();
    assert_eq!(first, again);
    let l = load_dir(&again, Device::Cpu).unwrap();
    assert_eq!(Vec::<f32>::try_from(&l.tensors["a.b"]).unwrap(), [2.0, 1.5]);
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["step-00000007"], "the replaced folder is gone, no temporaries");
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoints_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    save(&root, 5, &one(5.0), &state(5), 1).unwrap();
    // A tensor safetensors cannot hold fails the write after the temporary folder exists.
    let bad =
        vec![("c".to_owned(), Tensor::from_slice(&[1.0f32, 2.0]).to_kind(tch::Kind::ComplexFloat))];
    let err = save(&root, 6, &bad, &state(6), 1).unwrap_err();
    assert!(err.to_string().contains("tensors.safetensors"), "{err}");
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["step-00000005"]);
    let l = load_dir(&latest(&root).unwrap().unwrap(), Device::Cpu).unwrap();
    assert_eq!(Vec::<f32>::try_from(&l.tensors["a.b"]).unwrap(), [5.0, 1.5]);
}

#[test]
fn states_of_older_and_newer_versions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    let path = save(&root, 3, &one(3.0), &state(3), 1).unwrap();
    let spath = path.join(STATE);
    // Version 1: no version key, no data or recipe (what earlier builds wrote).
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&spath).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("version");
    o.remove("data");
    o.remove("recipe");
    o.insert("note".into(), "older runs wrote a note".into());
    fs::write(&spath, v.to_string()).unwrap();
    let l = load_dir(&path, Device::Cpu).unwrap();
    assert_eq!((l.state.version, l.state.data.as_ref(), l.state.step), (1, None, 3));
    // A newer version is refused with both numbers.
    let mut v = serde_json::to_value(state(3)).unwrap();
    v["version"] = (STATE_VERSION + 1).into();
    fs::write(&spath, v.to_string()).unwrap();
    let err = load_dir(&path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("newer twoview") && err.contains("state.json"), "{err}");
    // A state of another step than its folder.
    fs::write(&spath, serde_json::to_string(&state(4)).unwrap()).unwrap();
    let err = load_dir(&path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("step 3") && err.contains("4"), "{err}");
}
