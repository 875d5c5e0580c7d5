//! Probe: how tract optimises the sentiment graph (temporary investigation tool).
use std::time::Instant;
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or("models/sentiment/model.onnx".into());
    let mode = std::env::args().nth(2).unwrap_or("16".into());
    let t0 = Instant::now();
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(&path)?;
    let s = model.sym("S");
    let dim: TDim = if mode == "sym" {
        s.to_dim()
    } else {
        mode.parse::<usize>()?.to_dim()
    };
    for i in 0..3 {
        model.set_input_fact(
            i,
            InferenceFact::dt_shape(i64::datum_type(), tvec![1.to_dim(), dim.clone()]),
        )?;
    }
    let typed = model.into_typed()?;
    let opt = typed.into_optimized()?;
    let mut ops = std::collections::BTreeMap::<String, usize>::new();
    for n in opt.nodes() {
        *ops.entry(n.op().name().to_string()).or_default() += 1;
    }
    let mut const_bytes = 0usize;
    for n in opt.nodes() {
        if let Some(c) = n
            .op()
            .downcast_ref::<tract_onnx::tract_core::ops::konst::Const>()
        {
            const_bytes += c.val().len() * c.val().datum_type().size_of();
        }
    }
    println!(
        "optimised in {:?}; ops {:?}; const bytes {:.1} MB",
        t0.elapsed(),
        ops,
        const_bytes as f64 / 1e6
    );
    let plan = opt.into_runnable()?;
    for len in [16usize, 64] {
        if mode != "sym" && mode.parse::<usize>()? != len {
            continue;
        }
        let ids = Tensor::from_shape(&[1, len], &vec![101i64; len])?;
        let mask = Tensor::from_shape(&[1, len], &vec![1i64; len])?;
        let tt = Tensor::from_shape(&[1, len], &vec![0i64; len])?;
        let inputs: TVec<TValue> = tvec![ids.into(), mask.into(), tt.into()];
        plan.run(inputs.clone())?;
        let t = Instant::now();
        for _ in 0..20 {
            plan.run(inputs.clone())?;
        }
        println!("len {len}: {:?} per run", t.elapsed() / 20);
    }
    Ok(())
}
