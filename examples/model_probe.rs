//! Measures a sentiment ONNX model in tract the way inferd would run it, without touching
//! inferd's runtime: load + optimise time, RSS after load, latency per sequence length, and
//! held-out accuracy. An experiment tool (docs/model-experiment.md), not part of the server.
//!
//! ```text
//! cargo run --release --example model_probe -- MODEL.onnx [options]
//!   --buckets 16,32,64,128  one plan per length bucket, inputs padded to the bucket (as
//!                           inferd ships); default: ONE plan with a symbolic length S,
//!                           inputs unpadded
//!   --pad                   with the symbolic plan, still pad inputs to the buckets (padding
//!                           sensitivity of the model in tract)
//!   --dir DIR               tokenizer.json and heldout.jsonl (default models/sentiment)
//!   --runs N                latency runs per length, median reported (default 50)
//!   --lengths 16,32,64,128  lengths timed (tokens including [CLS]/[SEP])
//!   --no-acc                skip the held-out accuracy pass
//!   --probs FILE            write p(positive) per held-out line (for comparison with
//!                           onnxruntime)
//!   --transform NAME        apply a tract model transform (e.g. block_quant: Q4_0 weights
//!                           with fp32 activations) to the decluttered model before
//!                           optimising; repeatable
//! ```
//! Prints one JSON object per measurement on stdout. Environment: PROBE_DUMP=1 prints the
//! optimised model's ops and constants; PROBE_PROFILE=LEN times each op kind over 20 runs at
//! LEN tokens (PROBE_NODES=1: each node), on stderr.

use std::io::{BufRead, Write};
use std::time::Instant;
use tokenizers::Tokenizer;
use tract_onnx::prelude::*;

const BUCKETS: [usize; 4] = [16, 32, 64, 128];

struct Args {
    model: String,
    buckets: Option<Vec<usize>>,
    pad: bool,
    dir: String,
    runs: usize,
    lengths: Vec<usize>,
    acc: bool,
    probs: Option<String>,
    transforms: Vec<String>,
}

fn list(s: &str) -> Vec<usize> {
    s.split(',')
        .map(|x| x.trim().parse().expect("a number"))
        .collect()
}

fn args() -> Args {
    let mut a = Args {
        model: String::new(),
        buckets: None,
        pad: false,
        dir: "models/sentiment".into(),
        runs: 50,
        lengths: BUCKETS.to_vec(),
        acc: true,
        probs: None,
        transforms: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().expect("option needs a value");
        match x.as_str() {
            "--buckets" => a.buckets = Some(list(&val())),
            "--pad" => a.pad = true,
            "--dir" => a.dir = val(),
            "--runs" => a.runs = val().parse().expect("a number"),
            "--lengths" => a.lengths = list(&val()),
            "--no-acc" => a.acc = false,
            "--probs" => a.probs = Some(val()),
            "--transform" => a.transforms.push(val()),
            _ if !x.starts_with("--") && a.model.is_empty() => a.model = x,
            _ => panic!("unknown argument {x}"),
        }
    }
    assert!(
        !a.model.is_empty(),
        "usage: model_probe MODEL.onnx [options]"
    );
    a
}

/// (VmRSS, VmHWM) in MiB, from /proc/self/status.
fn rss() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

type Plan = Arc<TypedRunnableModel>;

/// Parses the ONNX file and makes one runnable plan per entry of `lens` (None: symbolic S).
fn load(
    path: &str,
    lens: &[Option<usize>],
    transforms: &[String],
) -> TractResult<(Vec<Plan>, [usize; 3], f64, f64)> {
    let t0 = Instant::now();
    let model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)?;
    let parse = t0.elapsed().as_secs_f64();
    // inputs by name, whatever the graph order
    let names: Vec<String> = model
        .input_outlets()?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    let pos = |n: &str| names.iter().position(|x| x == n).expect("input missing");
    let order = [
        pos("input_ids"),
        pos("attention_mask"),
        pos("token_type_ids"),
    ];
    let mut plans = vec![];
    for len in lens {
        let mut m = model.clone();
        let s = match len {
            Some(n) => n.to_dim(),
            None => m.sym("S").to_dim(),
        };
        for i in 0..3 {
            m.set_input_fact(
                i,
                InferenceFact::dt_shape(i64::datum_type(), tvec![1.to_dim(), s.clone()]),
            )?;
        }
        let mut typed = m.into_typed()?.into_decluttered()?;
        for name in transforms {
            let t = tract_onnx::tract_core::transform::get_transform(name)?
                .ok_or_else(|| TractError::msg(format!("no tract transform named {name}")))?;
            t.transform(&mut typed)?;
        }
        let opt = typed.into_optimized()?;
        if std::env::var_os("PROBE_DUMP").is_some() {
            dump(&opt);
        }
        plans.push(opt.into_runnable()?);
    }
    Ok((plans, order, parse, t0.elapsed().as_secs_f64()))
}

/// Op histogram and the constants the optimised model holds (stderr), largest first.
fn dump(m: &TypedModel) {
    let mut ops = std::collections::BTreeMap::<String, usize>::new();
    let mut consts = vec![];
    for n in m.nodes() {
        *ops.entry(n.op.name().to_string()).or_default() += 1;
        if let Some(c) = n.op_as::<tract_onnx::tract_core::ops::konst::Const>() {
            let t = c.val();
            let bytes = match c.exotic_fact() {
                Some(f) => f.mem_size().to_i64().unwrap_or(-1),
                None => (t.len() * t.datum_type().size_of()) as i64,
            };
            consts.push((
                bytes,
                format!(
                    "{:?} {:?} exotic={}",
                    t.datum_type(),
                    t.shape(),
                    c.exotic_fact().is_some()
                ),
                n.name.clone(),
            ));
        }
    }
    consts.sort_by_key(|c| std::cmp::Reverse(c.0));
    let total: i64 = consts.iter().map(|c| c.0).sum();
    eprintln!("ops: {ops:?}");
    eprintln!(
        "consts: {} totalling {:.1} MiB",
        consts.len(),
        total as f64 / 1048576.0
    );
    let mut by = std::collections::BTreeMap::<String, (usize, i64)>::new();
    for c in &consts {
        let k = c.1.split(' ').next().unwrap_or("").to_string()
            + if c.1.ends_with("true") { " exotic" } else { "" };
        let e = by.entry(k).or_default();
        e.0 += 1;
        e.1 += c.0;
    }
    eprintln!("by type: {by:?}");
    for c in consts.iter().take(12) {
        eprintln!("  {:>10} {} {}", c.0, c.1, c.2);
    }
}

/// Time per op kind over 20 runs at one length (stderr).
fn profile(plan: &Plan, order: &[usize; 3], len: usize, pad: usize) -> TractResult<()> {
    let ids: Vec<u32> = (0..len).map(|i| 1000 + i as u32).collect();
    let n = pad.max(len);
    let mut by_name = [vec![0i64; n], vec![0i64; n], vec![0i64; n]];
    for i in 0..len {
        by_name[0][i] = ids[i] as i64;
        by_name[1][i] = 1;
    }
    let mut times = std::collections::HashMap::<String, f64>::new();
    let mut state = tract_onnx::tract_core::plan::SimpleState::new(plan)?;
    for _ in 0..20 {
        let mut inputs: TVec<TValue> = tvec![];
        for slot in 0..3 {
            let k = order.iter().position(|&o| o == slot).expect("slot");
            inputs.push(Tensor::from_shape(&[1, n], &by_name[k])?.into());
        }
        state.run_plan_with_eval(inputs, |s, st, node, inp| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(s, st, node, inp);
            *times
                .entry(if std::env::var_os("PROBE_NODES").is_some() {
                    format!(
                        "{} {} {:?}",
                        node.op.name(),
                        node.name,
                        node.outputs[0].fact
                    )
                } else {
                    node.op.name().to_string()
                })
                .or_default() += t.elapsed().as_secs_f64() * 1e3 / 20.0;
            r
        })?;
    }
    let mut v: Vec<_> = times.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = v.iter().map(|x| x.1).sum();
    eprintln!("profile at {len} tokens: {total:.2} ms per run");
    for (k, t) in v.iter().take(30) {
        eprintln!("  {t:8.3} ms  {k}");
    }
    Ok(())
}

fn run(plan: &Plan, order: &[usize; 3], ids: &[u32], pad_to: usize) -> TractResult<f32> {
    let n = pad_to.max(ids.len());
    let mut x = vec![0i64; n];
    let mut mask = vec![0i64; n];
    for (i, &t) in ids.iter().enumerate() {
        x[i] = t as i64;
        mask[i] = 1;
    }
    let tt = vec![0i64; n];
    let by_name = [x, mask, tt];
    let mut inputs: TVec<TValue> = tvec![];
    for slot in 0..3 {
        let k = order.iter().position(|&o| o == slot).expect("slot");
        inputs.push(Tensor::from_shape(&[1, n], &by_name[k])?.into());
    }
    let out = plan.run(inputs)?;
    let p = out[0].to_plain_array_view::<f32>()?;
    Ok(p.iter().copied().nth(1).unwrap_or(f32::NAN))
}

fn main() -> TractResult<()> {
    let a = args();
    let tok = Tokenizer::from_file(format!("{}/tokenizer.json", a.dir))
        .map_err(|e| TractError::msg(e.to_string()))?;
    let (rss0, _) = rss();
    let lens: Vec<Option<usize>> = match &a.buckets {
        Some(b) => b.iter().map(|&n| Some(n)).collect(),
        None => vec![None],
    };
    let (plans, order, parse, total) = load(&a.model, &lens, &a.transforms)?;
    let (rss1, hwm1) = rss();
    println!(
        "{{\"model\":\"{}\",\"mode\":\"{}\",\"transforms\":{:?},\"parse_s\":{parse:.3},\"load_optimise_s\":{total:.3},\
         \"rss_before_mib\":{rss0:.1},\"rss_after_load_mib\":{rss1:.1},\"hwm_after_load_mib\":{hwm1:.1}}}",
        a.model,
        match &a.buckets {
            Some(b) => format!("buckets {b:?}"),
            None => "symbolic S".into(),
        },
        a.transforms,
    );
    let pick = |len: usize| -> (usize, usize) {
        match &a.buckets {
            Some(b) => {
                let i = b
                    .iter()
                    .position(|&x| x >= len)
                    .expect("too long for the buckets");
                (i, b[i])
            }
            None if a.pad => (0, *BUCKETS.iter().find(|&&x| x >= len).unwrap_or(&len)),
            None => (0, len),
        }
    };
    // latency: [CLS] + (L-2) ordinary tokens + [SEP], batch 1
    for &len in &a.lengths {
        let ids: Vec<u32> = std::iter::once(101)
            .chain((0..len - 2).map(|i| 1000 + i as u32))
            .chain(std::iter::once(102))
            .collect();
        let (pi, pad) = pick(len);
        for _ in 0..5 {
            run(&plans[pi], &order, &ids, pad)?;
        }
        let mut ts: Vec<f64> = (0..a.runs)
            .map(|_| {
                let t = Instant::now();
                run(&plans[pi], &order, &ids, pad).expect("run");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ts.sort_by(|x, y| x.total_cmp(y));
        println!(
            "{{\"len\":{len},\"median_ms\":{:.2},\"min_ms\":{:.2},\"p90_ms\":{:.2}}}",
            ts[ts.len() / 2],
            ts[0],
            ts[ts.len() * 9 / 10]
        );
    }
    if let Ok(len) = std::env::var("PROBE_PROFILE") {
        profile(
            &plans[pick(len.parse()?).0],
            &order,
            len.parse()?,
            pick(len.parse()?).1,
        )?;
    }
    let (rss2, hwm2) = rss();
    println!("{{\"rss_after_latency_mib\":{rss2:.1},\"hwm_mib\":{hwm2:.1}}}");
    if a.acc {
        let f = std::fs::File::open(format!("{}/heldout.jsonl", a.dir))?;
        let mut probs = vec![];
        let (mut n, mut ok) = (0usize, 0usize);
        let t = Instant::now();
        for line in std::io::BufReader::new(f).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            let text = v["text"].as_str().expect("text");
            let label = v["label"].as_i64().expect("label");
            let enc = tok
                .encode(text, true)
                .map_err(|e| TractError::msg(e.to_string()))?;
            let (pi, pad) = pick(enc.get_ids().len());
            let p = run(&plans[pi], &order, enc.get_ids(), pad)?;
            ok += ((p > 0.5) as i64 == label) as usize;
            n += 1;
            probs.push(p);
        }
        let (rss3, hwm3) = rss();
        println!(
            "{{\"heldout\":{n},\"correct\":{ok},\"accuracy\":{:.4},\"secs\":{:.1},\"rss_mib\":{rss3:.1},\"hwm_mib\":{hwm3:.1}}}",
            ok as f64 / n as f64,
            t.elapsed().as_secs_f64()
        );
        if let Some(path) = &a.probs {
            let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
            for p in probs {
                writeln!(w, "{p}")?;
            }
        }
    }
    Ok(())
}
