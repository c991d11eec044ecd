//! Docker's `config.json` as `berth login`, `logout` and pulls use it
//! (`DockerConfig::load`, `get`, `set`, `remove`, `save`): any file gives a configuration or
//! an error, never a panic. Credentials that are set are what `get` returns, before and
//! after a save and a reload; after `remove`, `get` returns nothing for that registry (a
//! logout forgets the credentials a pull would use); every other field of the file survives
//! a save.
//!
//! The first byte picks the registry (Docker Hub under its names, `host:port`, a URL-like
//! key) and the username and password come from the input; the rest is the file.
#![no_main]

mod common;

use berth_registry::auth::{config_key, DockerConfig};
use berth_registry::Credentials;
use common::{Input, Sandbox};

const REGISTRIES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "localhost:5000",
    "example.com",
    "example.com:443",
    "quay.io",
    "127.0.0.1:5000",
    "https://example.com/v1/",
    "",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.byte();
    let registry = *input.pick(REGISTRIES);
    // Docker's `auth` is base64 of `user:password`: a username has no colon.
    let username = input.text(16).replace(':', "_");
    let password = input.text(16);
    let file = input.rest();
    let sb = Sandbox::new("dockercfg");
    let path = sb.dest.join("config.json");
    std::fs::write(&path, file).expect("write the file");
    let Ok(mut cfg) = DockerConfig::load(&path) else {
        sb.check();
        return;
    };
    for r in REGISTRIES {
        let _ = cfg.get(r);
    }
    let before: serde_json::Value = serde_json::from_slice(file).unwrap_or_default();
    let creds = Credentials { username, password };
    if sel & 1 == 0 {
        cfg.set(registry, &creds);
        assert_eq!(cfg.get(registry).as_ref(), Some(&creds), "just set");
    } else {
        cfg.remove(registry);
        assert_eq!(cfg.get(registry), None, "{registry} after remove");
    }
    if sel & 2 != 0 {
        cfg.save().expect("save");
        let again = DockerConfig::load(&path).expect("reload what was saved");
        assert_eq!(again.get(registry), cfg.get(registry), "after a reload");
        // Only `auths` changes: every other field is kept.
        let after: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("saved JSON");
        if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
            for (k, v) in b.iter().filter(|(k, _)| *k != "auths") {
                assert_eq!(a.get(k), Some(v), "field {k} after a save");
            }
        }
        let _ = config_key(registry);
    }
    sb.check();
});
