//! Fuzzes the server's config file: arbitrary text into
//! [`fraiseql_server::ServerConfig::from_toml`], then, for a file that parses, the parts of
//! the build that read nothing from the disk or the environment: limits (presets, caps,
//! rates), the security policy and the fields (channel templates, filters, requirements).
//!
//! Checked: parsing and those builds never panic; every error names its origin (the file)
//! as the first thing in its message.
#![no_main]

use std::path::Path;

use fraiseql_server::ServerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz/fraiseql.toml");
    match ServerConfig::from_toml(text, origin) {
        Err(err) => assert!(err.to_string().starts_with("fuzz/fraiseql.toml: "), "{err}"),
        Ok(config) => {
            if let Err(err) = config.limits() {
                assert!(
                    err.to_string().starts_with("fuzz/fraiseql.toml: limits"),
                    "{err}"
                );
            }
            let _ = config.security();
            if let Err(err) = config.fields() {
                assert!(
                    err.to_string().starts_with("fuzz/fraiseql.toml: fields."),
                    "{err}"
                );
            }
        }
    }
});
