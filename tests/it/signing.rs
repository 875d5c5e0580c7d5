//! Detached signatures and signed model folders through the real binary, checked against
//! the stock tools the format promises: `openssl pkeyutl -rawin` and `sha256sum -c`.

use crate::support::inferd_command;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn inferd(args: &[&str], cwd: &Path) -> Output {
    inferd_command()
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A stock tool; missing, the test fails saying so (CI's Debian image has both).
fn tool(program: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}` is needed on PATH to prove the format against it: {e}")
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `inferd keygen --out keys` in `dir`: (private, public, kid), relative to `dir`.
fn keygen(dir: &Path) -> (String, String, String) {
    let out = inferd(&["keygen", "--out", "keys"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let private: Vec<PathBuf> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".key.pem"))
        .collect();
    let name = private[0].file_name().unwrap().to_str().unwrap();
    let kid = name.strip_suffix(".key.pem").unwrap().to_owned();
    (format!("keys/{name}"), format!("keys/{kid}.pem"), kid)
}

#[test]
fn inferd_signature_verifies_with_openssl_and_openssls_with_inferd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (private, public, kid) = keygen(dir);
    std::fs::write(dir.join("SHA256SUMS"), "0123  inferd-aarch64\n").unwrap();

    let out = inferd(&["sign", "--key", &private, "SHA256SUMS"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("SHA256SUMS.sig")).unwrap().len(), 64);
    let args = ["pkeyutl", "-verify", "-pubin", "-inkey", &public, "-rawin"];
    let check = [
        &args[..],
        &["-in", "SHA256SUMS", "-sigfile", "SHA256SUMS.sig"],
    ]
    .concat();
    let out = tool("openssl", &check, dir);
    assert!(
        out.status.success(),
        "openssl refused inferd's signature: {}",
        text(&out)
    );

    let sign = ["pkeyutl", "-sign", "-rawin", "-inkey", &private];
    let sign = [&sign[..], &["-in", "SHA256SUMS", "-out", "by-openssl.sig"]].concat();
    let out = tool("openssl", &sign, dir);
    assert!(out.status.success(), "{}", text(&out));
    let verify = [
        "verify",
        "--keys",
        "keys",
        "SHA256SUMS",
        "--sig",
        "by-openssl.sig",
    ];
    // The private key shares the folder keygen wrote: trusting that folder is refused.
    let out = inferd(&verify, dir);
    assert!(text(&out).contains("a private key"), "{}", text(&out));
    std::fs::remove_file(dir.join(&private)).unwrap();
    let out = inferd(&verify, dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("good signature by key {kid}")),
        "{}",
        text(&out)
    );
}

#[test]
fn openssl_made_key_signs_and_a_changed_file_fails_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let genpkey = [
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        "station.key.pem",
    ];
    assert!(tool("openssl", &genpkey, dir).status.success());
    let pubout = [
        "pkey",
        "-in",
        "station.key.pem",
        "-pubout",
        "-out",
        "station.pem",
    ];
    assert!(tool("openssl", &pubout, dir).status.success());
    std::fs::write(dir.join("notes.txt"), "release 1\n").unwrap();
    let out = inferd(&["sign", "--key", "station.key.pem", "notes.txt"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = inferd(&["verify", "--key", "station.pem", "notes.txt"], dir);
    assert!(
        text(&out).contains("good signature by key station"),
        "{}",
        text(&out)
    );

    std::fs::write(dir.join("notes.txt"), "release 2\n").unwrap();
    let out = inferd(&["verify", "--key", "station.pem", "notes.txt"], dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("notes.txt: signed by a key not in"),
        "{}",
        text(&out)
    );
    let out = inferd(&["verify", "--key", "station.pem", "other.txt"], dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("unsigned: no other.txt.sig"),
        "{}",
        text(&out)
    );
}

#[test]
fn signed_model_folder_checks_with_sha256sum_and_refuses_a_changed_or_added_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (private, public, kid) = keygen(dir);
    let version = dir.join("models/digits/2");
    std::fs::create_dir_all(&version).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits");
    for name in ["model.onnx", "model.toml"] {
        std::fs::copy(bundled.join(name), version.join(name)).unwrap();
    }
    let out = inferd(
        &["model", "sign", "models/digits/2", "--key", &private],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = tool(
        "sha256sum",
        &["-c", "--strict", "MANIFEST.sha256"],
        &version,
    );
    assert!(out.status.success(), "sha256sum -c: {}", text(&out));
    let args = [
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &format!("../../../{public}"),
    ];
    let check = [
        &args[..],
        &[
            "-rawin",
            "-in",
            "MANIFEST.sha256",
            "-sigfile",
            "MANIFEST.sha256.sig",
        ],
    ]
    .concat();
    let out = tool("openssl", &check, &version);
    assert!(out.status.success(), "{}", text(&out));

    let verify = ["model", "verify", "models/digits/2", "--key", &public];
    let out = inferd(&verify, dir);
    assert!(
        text(&out).contains(&format!("signed by key {kid}")),
        "{}",
        text(&out)
    );
    std::fs::write(version.join("model.onnx.data"), b"external weights").unwrap();
    let out = inferd(&verify, dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("model.onnx.data: not in the signed manifest"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(version.join("model.onnx.data")).unwrap();
    let mut onnx = std::fs::read(version.join("model.onnx")).unwrap();
    let last = onnx.len() - 1;
    onnx[last] ^= 1;
    std::fs::write(version.join("model.onnx"), onnx).unwrap();
    let out = inferd(&verify, dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("model.onnx: SHA-256 differs from the signed manifest"),
        "{}",
        text(&out)
    );
}

#[test]
fn init_require_signed_models_key_signs_what_it_lists_as_unsigned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let version = dir.join("models/digits/1");
    std::fs::create_dir_all(&version).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits");
    for name in ["model.onnx", "model.toml"] {
        std::fs::copy(bundled.join(name), version.join(name)).unwrap();
    }
    let init = [
        "init",
        "state",
        "--models",
        "models",
        "--require-signed-models",
        "--json",
    ];
    let out = inferd(&init, dir);
    assert!(out.status.success(), "{}", text(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let signed = &p["signed_models"];
    assert_eq!(signed["unsigned"][0], version.display().to_string(), "{p}");
    let config = std::fs::read_to_string(dir.join("state/inferd.toml")).unwrap();
    assert!(
        config.contains("trusted_keys_dir = \"model_keys\""),
        "{config}"
    );
    assert!(config.contains("require_signed = true"), "{config}");

    let key = signed["signing_key"].as_str().unwrap();
    let out = inferd(&["model", "sign", "models/digits/1", "--key", key], dir);
    assert!(out.status.success(), "{}", text(&out));
    let verify = [
        "model",
        "verify",
        "models/digits/1",
        "--keys",
        "state/model_keys",
    ];
    let out = inferd(&verify, dir);
    let kid = signed["key_ids"][0].as_str().unwrap();
    assert!(
        text(&out).contains(&format!("signed by key {kid}")),
        "{}",
        text(&out)
    );
}
