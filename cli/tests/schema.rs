//! berth against the runtime-spec's own schemas and test configs (tests/fixtures/runtime-spec): `berth
//! state` (created and running) validates against state-schema.json, `berth features` against
//! features-schema.json, `berth spec` against config-schema.json (their `$ref`s to sibling
//! files resolved by a retriever), and
//! `berth_runtime::config::parse` accepts every Linux config in schema/test/config/good and
//! rejects every one in bad.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{berth_test, Berth, OutputExt, SLEEPER};
use serde_json::Value;

fn schema_dir() -> PathBuf {
    common::fixtures_dir().join("runtime-spec/schema")
}

/// Resolves `$ref`s such as `defs.json#/...` (relative, so under jsonschema's default
/// `json-schema:///` base) to the sibling files of the schema directory.
struct SiblingFiles;

impl jsonschema::Retrieve for SiblingFiles {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<&str>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .path()
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let bytes = fs::read(schema_dir().join(&name))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_slice(&fs::read(schema_dir().join(schema_file)).unwrap()).unwrap();
    jsonschema::options()
        .with_retriever(SiblingFiles)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{schema_file}: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what} is invalid: {errors:#?}\n{doc:#}");
}

#[test]
fn state_validates_against_the_state_schema() {
    let v = validator("state-schema.json");
    assert!(
        !v.is_valid(&serde_json::json!({"id": "x"})),
        "the validator rejects an incomplete state"
    );
    berth_test(|b| {
        let id = b.id("schema");
        let mut c = b.config(SLEEPER);
        c["annotations"] = serde_json::json!({"org.example.key": "value"});
        b.create(&id, &c);
        assert_valid(&v, &b.state(&id), "created state");
        b.start(&id);
        let running = b.state(&id);
        assert_eq!(running["annotations"]["org.example.key"], "value");
        assert_valid(&v, &running, "running state");
        b.kill_and_wait(&id, "KILL");
        assert_valid(&v, &b.state(&id), "stopped state");
        b.delete(&id);
    });
}

#[test]
fn features_validate_against_the_features_schema() {
    let v = validator("features-schema.json");
    let b = Berth::new();
    let out = b.cmd(&["features"]).ok();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid(&v, &doc, "berth features");
    assert_eq!(doc["ociVersionMax"], berth_runtime::SPEC_VERSION);
}

#[test]
fn spec_validates_against_the_config_schema() {
    let v = validator("config-schema.json");
    let b = Berth::new();
    for rootless in [false, true] {
        let dir = b.dir(&format!("spec-{rootless}"));
        let mut args = vec!["spec", "--bundle", dir.to_str().unwrap()];
        if rootless {
            args.push("--rootless");
        }
        b.cmd(&args).ok();
        let doc: Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_valid(&v, &doc, &format!("berth spec (rootless: {rootless})"));
    }
}

fn test_configs(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(schema_dir().join("test/config").join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {kind} configs");
    files
}

/// Configs for another platform (freebsd, zos, ...) that a Linux runtime need not accept.
fn is_non_linux(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_str().unwrap();
    ["freebsd", "solaris", "windows", "vm", "zos"]
        .iter()
        .any(|os| name.starts_with(os))
}

/// Why berth may refuse a good config on this host, and the edit that leaves the rest to test:
/// berth supports runtime-spec 1.0.0 to 1.3.x by design (the spec's example says 0.5.0-dev),
/// and refuses an AppArmor profile where AppArmor is not enabled.
fn host_adjustment(doc: &mut Value, error: &str) -> bool {
    if error.contains("ociVersion")
        && doc["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("0."))
    {
        doc["ociVersion"] = "1.0.0".into();
        return true;
    }
    if error.contains("process.apparmorProfile") && !berth_runtime::config::apparmor_enabled() {
        doc["process"]
            .as_object_mut()
            .unwrap()
            .remove("apparmorProfile");
        return true;
    }
    false
}

#[test]
fn good_linux_configs_parse() {
    for path in test_configs("good") {
        if is_non_linux(&path) {
            continue;
        }
        let mut doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let mut adjusted = Vec::new();
        loop {
            match berth_runtime::config::parse(&serde_json::to_vec(&doc).unwrap()) {
                Ok(_) => break,
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        host_adjustment(&mut doc, &e),
                        "{} (after {adjusted:?}): {e}",
                        path.display()
                    );
                    assert!(adjusted.len() < 4, "{}: {adjusted:?}", path.display());
                    adjusted.push(e);
                }
            }
        }
    }
}

/// Bad configs berth accepts (each has its own ignored test below).
const KNOWN_ACCEPTED: &[&str] = &["linux-hugepage.json"];

#[test]
fn bad_configs_are_rejected() {
    for path in test_configs("bad") {
        let name = path.file_name().unwrap().to_str().unwrap();
        if is_non_linux(&path) || KNOWN_ACCEPTED.contains(&name) {
            continue;
        }
        let bytes = fs::read(&path).unwrap();
        assert!(
            berth_runtime::config::parse(&bytes).is_err(),
            "{} was accepted",
            path.display()
        );
    }
}

/// The schema requires `pageSize` to match `^[1-9][0-9]*[KMG]B$`; "64kB" names no hugetlb
/// controller file.
#[test]
fn bad_hugepage_page_size_is_rejected() {
    let bytes = fs::read(schema_dir().join("test/config/bad/linux-hugepage.json")).unwrap();
    let e = berth_runtime::config::parse(&bytes).expect_err("accepted");
    assert!(e.to_string().contains("pageSize"), "{e}");
}
