//! Configuration parsing (`inferd::config::Config::from_sources`): arbitrary TOML text plus
//! environment overrides. Never panics; a configuration it accepts is accepted again
//! (parsing is deterministic) and satisfies the caps `from_sources` promises.
//!
//! Input: the config text, optionally followed by a line `%%` and `NAME=value` lines, each
//! an environment variable the closure returns (names are `INFERD_` + the given suffix,
//! upper-cased, so `limits_max_body_bytes=1` sets `INFERD_LIMITS_MAX_BODY_BYTES`).
#![no_main]

use inferd::config::Config;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let input = inferd_fuzz::text(data);
    let (text, env_text) = match input.split_once("\n%%\n") {
        Some((t, e)) => (t, e),
        None => (&*input, ""),
    };
    let env: HashMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("INFERD_{}", k.trim().to_ascii_uppercase()), v.to_owned()))
        .collect();
    let lookup = |name: &str| env.get(name).cloned();
    let base = Path::new("/etc/inferd");
    let Ok(config) = Config::from_sources(text, "fuzz.toml", base, lookup) else {
        return;
    };
    let l = &config.limits;
    assert!(l.max_header_bytes >= 1 && l.max_header_bytes <= 1 << 20);
    assert!(l.max_headers >= 1 && l.max_headers <= 1024);
    assert!(l.max_request_line_bytes >= 1 && l.max_request_line_bytes <= 1 << 20);
    assert!(l.max_body_bytes >= 1 && l.max_body_bytes <= 1 << 30);
    assert!(config.models.dir.is_absolute(), "relative paths resolve against the base");
    let again = Config::from_sources(text, "fuzz.toml", base, lookup).expect("accepted again");
    assert_eq!(again, config);
});
