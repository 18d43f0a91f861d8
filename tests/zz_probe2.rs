mod common;
use std::time::Instant;
use triage_zoo::{decode_file, Dataset, DatasetOptions, DecodeOptions, Zoo};

#[test]
#[ignore]
fn probe2() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let names = [
        "mobilenet_v2_100_224",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ];
    let vs: Vec<_> = names.iter().map(|n| zoo.variant(n).unwrap()).collect();
    for v in &vs {
        v.load().unwrap();
    }
    let data = Dataset::open(common::dev_dir(), &DatasetOptions::default())
        .unwrap()
        .limit(60);
    let mut dec = Vec::new();
    let mut t = vec![Vec::new(); 3];
    let mut c = vec![Vec::new(); 3];
    for s in data.samples() {
        let t0 = Instant::now();
        let img = decode_file(&s.path, &DecodeOptions::default()).unwrap();
        dec.push(t0.elapsed().as_secs_f64() * 1e3);
        for (k, v) in vs.iter().enumerate() {
            let t0 = Instant::now();
            let _ = v.classify(&img).unwrap();
            c[k].push(t0.elapsed().as_secs_f64() * 1e3);
            let inp = v.prepare(&img).unwrap();
            let t0 = Instant::now();
            v.run(&inp).unwrap();
            t[k].push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mean = |x: &Vec<f64>| x.iter().sum::<f64>() / x.len() as f64;
    eprintln!("decode mean {:.2}", mean(&dec));
    for k in 0..3 {
        eprintln!(
            "{} classify mean {:.2} run mean {:.2}",
            names[k],
            mean(&c[k]),
            mean(&t[k])
        );
    }
}
