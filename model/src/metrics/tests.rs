use super::*;

fn train(step: u64) -> Record {
    Record::Train(TrainRecord {
        step,
        epoch: step as f64 / 10.0,
        loss: 1.0 / (step as f64 + 1.0),
        lr: 1e-4,
        momentum: 0.99,
        grad_norm: 2.0,
        grad_norm_first: 0.5,
        img_per_s: 100.0,
        data_wait: 0.01,
        spike: false,
        replaced_rows: 0,
        elapsed_s: step as f64,
    })
}

#[test]
fn records_round_trip_and_a_resume_drops_the_steps_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut log = MetricsLog::open(&path, 0).unwrap();
    for s in 1..=6 {
        log.write(&train(s)).unwrap();
    }
    let knn = Record::Knn(KnnRecord {
        step: 6,
        top1: 40.0,
        top5: 80.0,
        k: 20,
        val_images: 50,
        train_images: 100,
    });
    log.write(&knn).unwrap();
    log.write(&Record::NonFinite { step: 7, loss: "NaN".into() }).unwrap();
    drop(log);
    // A line of a kind from a newer build is read as Other and kept.
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("{\"kind\":\"future\",\"step\":2}\n");
    fs::write(&path, &text).unwrap();
    let all = read(&path).unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(all[0], train(1));
    assert_eq!(all[6], knn);
    assert_eq!(all[8], Record::Other);
    // The JSON is what plot and users read: `kind` inside the object.
    assert!(text.lines().next().unwrap().starts_with("{\"kind\":\"train\",\"step\":1,"), "{text}");

    drop(MetricsLog::open(&path, 4).unwrap());
    let kept = read(&path).unwrap();
    let steps: Vec<Option<u64>> = kept.iter().map(Record::step).collect();
    assert_eq!(steps, [Some(1), Some(2), Some(3), Some(4), None]);
}

#[test]
fn a_damaged_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    fs::write(&path, "{\"kind\":\"knn\",\"step\":1,\"top1\":1,\"top5\":2,\"k\":1,\"val_images\":1,\"train_images\":1}\n{\"kind\":\"train\",\"step\":\n").unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl: line 2"), "{err}");
}
