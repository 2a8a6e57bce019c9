use super::*;

#[test]
fn lars_brings_its_own_defaults_unless_they_are_set() {
    let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
    let (c, notes) = TrainConfig::from_table_noted(table(r#"optimizer = "lars""#), "t").unwrap();
    assert_eq!((c.base_lr, c.weight_decay, notes.len()), (0.6, 1e-6, 2), "{notes:?}");
    assert!(notes[0].contains("base_lr = 0.6"), "{notes:?}");
    let (c, notes) =
        TrainConfig::from_table_noted(table("optimizer = \"lars\"\nbase_lr = 0.3"), "t").unwrap();
    assert_eq!((c.base_lr, c.weight_decay, notes.len()), (0.3, 1e-6, 1));
    let (c, notes) = TrainConfig::from_table_noted(table(""), "t").unwrap();
    assert_eq!((c.base_lr, c.weight_decay, notes.len()), (1.5e-4, 0.1, 0));
}

#[test]
fn moco_v3_names_are_accepted_for_ours() {
    assert_eq!(TrainConfig::canonical_key("moco_m"), "momentum");
    assert_eq!(TrainConfig::canonical_key("moco-t"), "temperature");
    assert_eq!(TrainConfig::canonical_key("stop-grad-conv1"), "freeze_patch");
    assert_eq!(TrainConfig::canonical_key("base_lr"), "base_lr");
    // Every alias names a real key.
    let known = toml::Table::try_from(TrainConfig::default()).unwrap();
    for (alias, ours) in ALIASES {
        assert!(known.contains_key(ours), "{alias} -> {ours}");
    }
}

#[test]
fn layers_apply_in_order_and_errors_name_the_layer_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "batch_size = 64\nmoco_m = 0.9\nlr = 1e-3\n").unwrap();
    let layers = Layers::new()
        .file(&file)
        .unwrap()
        .preset("vit_tiny")
        .unwrap()
        .set("batch_size=32")
        .unwrap()
        .set("moco-t = 0.5")
        .unwrap();
    let (c, _) = layers.resolve().unwrap();
    assert_eq!((c.batch_size, c.momentum, c.base_lr), (32, 0.9, 1e-3));
    assert_eq!((c.preset.as_str(), c.temperature), ("vit_tiny", 0.5));
    assert_eq!(layers.origin_of("momentum"), Some(&Origin::File(file.clone())));
    assert_eq!(layers.origin_of("batch_size"), Some(&Origin::Set("batch_size=32".into())));

    // A wrong type or an unknown key: the layer that gave it.
    let err = Layers::new().set("base_lr=fast").unwrap_err().to_string();
    assert!(err.starts_with("--set base_lr=fast:"), "{err}");
    std::fs::write(&file, "batch = 64\n").unwrap();
    let err = Layers::new().file(&file).unwrap_err().to_string();
    assert!(
        err.contains(&format!("--config {}", file.display())) && err.contains("batch"),
        "{err}"
    );
    let err = Layers::new().set("no_equals").unwrap_err().to_string();
    assert!(err.contains("--set no_equals") && err.contains("KEY=VALUE"), "{err}");
    // A value that parses but cannot be trained with: the key, and who set it last.
    std::fs::write(&file, "momentum = 1.5\n").unwrap();
    let layers = Layers::new().file(&file).unwrap();
    let (c, _) = layers.resolve().unwrap();
    let err = layers.plan(&c, 1000, Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with(&format!("--config {}: `momentum`", file.display())), "{err}");
    let layers = layers.set("momentum=2").unwrap();
    let (c, _) = layers.resolve().unwrap();
    let err = layers.plan(&c, 1000, Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with("--set momentum=2: `momentum`"), "{err}");
    let layers = Layers::new().preset("vit_huge").unwrap();
    let (c, _) = layers.resolve().unwrap();
    let err = layers.plan(&c, 1000, Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with("--preset: `preset`: unknown preset \"vit_huge\""), "{err}");
    let layers = Layers::new().set("dim=100").unwrap().set("heads=3").unwrap();
    let (c, _) = layers.resolve().unwrap();
    let err = layers.plan(&c, 1000, Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with("--set heads=3: `heads`"), "{err}");
}

#[test]
fn on_resume_only_run_keys_may_change() {
    let saved = TrainConfig { batch_size: 64, ..TrainConfig::default() };
    // Repeating the run's values, and changing run keys, is fine.
    let layers = Layers::new().set("batch_size=64").unwrap().set("max_steps=7").unwrap();
    let c = layers.resolve_on_resume(&saved).unwrap();
    assert_eq!((c.batch_size, c.max_steps), (64, 7));
    let layers = Layers::new().set("base_lr=1").unwrap();
    let c = layers.resolve_on_resume(&TrainConfig { base_lr: 1.0, ..saved.clone() }).unwrap();
    assert_eq!(c.base_lr, 1.0, "an integer for a float key is the same value");
    // A method key: refused, naming who tried and the run's value.
    let err = Layers::new().set("lr=3e-4").unwrap().resolve_on_resume(&saved).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("--set lr=3e-4: `base_lr`: cannot change on --resume"), "{text}");
    assert!(text.contains("the run has 0.00015") && text.contains("max_steps"), "{text}");
}

#[test]
fn an_epoch_drops_the_last_partial_batch_as_moco_v3s_loader() {
    // main_moco.py: DataLoader(..., drop_last=True): 1001 images in batches of 100 are 10 steps.
    let c =
        TrainConfig { batch_size: 100, epochs: 2.0, warmup_epochs: 1.0, ..TrainConfig::default() };
    let plan = c.plan(1001, Device::Cpu).unwrap();
    assert_eq!((plan.schedule.steps_per_epoch, plan.steps), (10, 20));
}
