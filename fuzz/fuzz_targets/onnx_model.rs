//! The ONNX protobuf reader (`inferd::model::onnx::read`), which reads every model before
//! tract does: `model add`, `model inspect` and the loader's external-data check. Never
//! panics, whatever the bytes; heap growth stays within a small multiple of the input (it
//! copies names, never tensor data); a model it reads, it reads the same way again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peak = inferd_fuzz::Peak::start();
    let first = inferd::model::onnx::read(data);
    assert!(
        peak.growth() <= 64 * data.len() + (64 << 10),
        "reading {} bytes grew the heap by {}",
        data.len(),
        peak.growth()
    );
    if let Ok(summary) = first {
        let again = inferd::model::onnx::read(data).expect("read twice");
        assert_eq!(summary.inputs, again.inputs);
        assert_eq!(summary.external, again.external);
        for value in summary.inputs.iter().chain(&summary.outputs) {
            let _ = inferd::model::onnx::oip_name(value.elem_type);
        }
    }
});
