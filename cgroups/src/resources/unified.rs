//! `linux.resources.unified`: raw v2 files, written last so they override the mapped fields.
//! Keys must be `<controller>.<file>` of a controller enabled for the container (or one of the
//! harmless `cgroup.` limits); files that would move processes or change the tree are refused.

use std::collections::HashMap;

use super::Target;
use crate::error::{Error, Result};
use crate::fsutil;

/// The `cgroup.*` files a config may set.
const CGROUP_FILES: &[&str] = &["cgroup.max.depth", "cgroup.max.descendants"];

/// Checks one key against the controllers enabled for the container.
pub(crate) fn check_key(key: &str, controllers: &[String]) -> Result<()> {
    let field = format!("unified.{key:?}");
    if key.contains('/') || key.starts_with('.') || key.contains('\0') {
        return Err(Error::invalid(field, "must be a file name (no slashes)"));
    }
    let Some((controller, rest)) = key.split_once('.') else {
        return Err(Error::invalid(
            field,
            "must be in the form CONTROLLER.PARAMETER",
        ));
    };
    if rest.is_empty() {
        return Err(Error::invalid(
            field,
            "must be in the form CONTROLLER.PARAMETER",
        ));
    }
    if controller == "cgroup" {
        if CGROUP_FILES.contains(&key) {
            return Ok(());
        }
        return Err(Error::invalid(
            field,
            format!("only {CGROUP_FILES:?} of the cgroup core files may be set"),
        ));
    }
    if !controllers.iter().any(|c| c == controller) {
        return Err(Error::unsupported(
            field,
            format!("controller {controller:?} is not available for the container's cgroup"),
        ));
    }
    Ok(())
}

pub(crate) fn apply(t: &Target<'_>, unified: &HashMap<String, String>) -> Result<()> {
    if unified.is_empty() {
        return Ok(());
    }
    if !t.v2() {
        return Err(Error::unsupported(
            "unified",
            "cannot use unified resources on a cgroup v1 (or hybrid) host",
        ));
    }
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for k in &keys {
        check_key(k, t.v2_controllers())?;
    }
    let dir = t.unified_dir()?;
    for k in keys {
        let v = &unified[k];
        if !fsutil::exists(dir, k) {
            return Err(Error::invalid(
                format!("unified.{k:?}"),
                format!("{} does not exist", dir.join(k).display()),
            ));
        }
        fsutil::write(dir, k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let c = vec!["memory".to_owned(), "pids".to_owned()];
        assert!(check_key("memory.high", &c).is_ok());
        assert!(check_key("cgroup.max.depth", &c).is_ok());
        assert!(check_key("cgroup.procs", &c).is_err());
        assert!(check_key("cgroup.kill", &c).is_err());
        assert!(check_key("io.max", &c)
            .unwrap_err()
            .to_string()
            .contains("not available"));
        assert!(check_key("memory", &c).is_err());
        assert!(check_key("../memory.max", &c).is_err());
        assert!(check_key("memory.", &c).is_err());
    }
}
