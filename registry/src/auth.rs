//! Credentials and authentication: docker's `config.json` (`auths`, base64 `user:password`)
//! read and written for login and logout, and the `WWW-Authenticate` challenges of the
//! distribution spec's token flow (Basic, or Bearer with a realm, service and scopes).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of a `Basic` Authorization header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The key docker uses in `auths` for a registry: Hub's legacy URL, else `host[:port]`.
pub fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB || registry == "index.docker.io" || registry == "registry-1.docker.io"
    {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// `host[:port]` of an `auths` key, which may be a URL (`https://host/v1/`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Whether the `auths` key `key` is for the registry whose key is `want`: the same host
/// (a key may be a URL), or one of Docker Hub's names for Hub.
fn key_matches(want: &str, key: &str) -> bool {
    let kh = key_host(key);
    kh == key_host(want)
        || (want.contains("index.docker.io") && matches!(kh, "docker.io" | "registry-1.docker.io"))
}

/// Docker's client configuration file (only `auths` is read or changed; every other field
/// is kept as it was).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Value,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(d).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Loads the file at `path` (missing: an empty configuration).
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let doc = match fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => json!({}),
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::io(path, "parse", std::io::Error::other(e.to_string())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
            Err(e) => return Err(Error::io(path, "read", e)),
        };
        if !doc.is_object() {
            return Err(Error::io(
                path,
                "parse",
                std::io::Error::other("not a JSON object"),
            ));
        }
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// Loads the file at [`DockerConfig::default_path`].
    pub fn load_default() -> Result<DockerConfig> {
        let path = Self::default_path().ok_or_else(|| {
            Error::io(
                "~/.docker/config.json",
                "locate",
                std::io::Error::other("neither DOCKER_CONFIG nor HOME is set"),
            )
        })?;
        Self::load(&path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry` (`docker.io` or `host[:port]`), matching keys
    /// written as URLs too.
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let auths = self.doc.get("auths")?.as_object()?;
        let want = config_key(registry);
        let entry = auths.get(&want).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| key_matches(&want, k))
                .map(|(_, v)| v)
        })?;
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            return Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => None,
        }
    }

    /// Stores credentials for `registry` (docker's form: base64 `user:password` in `auth`).
    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        let raw = format!("{}:{}", creds.username, creds.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(raw);
        let obj = self.doc.as_object_mut().expect("checked at load");
        let auths = obj.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        auths
            .as_object_mut()
            .expect("just made an object")
            .insert(config_key(registry), json!({ "auth": auth }));
    }

    /// Forgets the credentials of `registry`; whether there were any.
    pub fn remove(&mut self, registry: &str) -> bool {
        let want = config_key(registry);
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        // Every key `get` would read credentials from: Docker Hub's other names too.
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| key_matches(&want, k))
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        !keys.is_empty()
    }

    /// Writes the file: a new temporary file of mode 0600 (created exclusively, under a
    /// name of its own: a planted file or symlink is never opened) renamed into place. When
    /// the file is a symlink, its target is written instead (as docker does): the temporary
    /// file goes next to the target and replaces it, and the symlink stays.
    pub fn save(&self) -> Result<()> {
        let path = match fs::symlink_metadata(&self.path) {
            // A dangling symlink is replaced, not followed.
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
            }
            _ => self.path.clone(),
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, "create", e))?;
        let mut data = serde_json::to_vec_pretty(&self.doc).expect("a JSON value serialises");
        data.push(b'\n');
        berth_sys::fs::write_atomic(&path, &data, 0o600, berth_sys::fs::Durability::Durable)
            .map_err(|e| Error::io(&path, "write", e))
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`, ...), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header: `Scheme k="v", k=v, Scheme2 ...`.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        let token = &header[start..i];
        if i < b.len() && b[i] == b'=' {
            // A parameter of the current challenge.
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                header[s..i].trim().to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// A token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
        let c = parse_challenges(r#"Basic realm="berth test", Bearer realm=x"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params["realm"], "berth test");
        assert_eq!(
            (c[1].scheme.as_str(), c[1].params["realm"].as_str()),
            ("bearer", "x")
        );
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn docker_config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            r#"{"auths":{"https://quay.io/v1/":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load(&path).unwrap();
        let q = c.get("quay.io").unwrap();
        assert_eq!((q.username.as_str(), q.password.as_str()), ("u", "p"));
        assert!(c.get("localhost:5000").is_none());
        let creds = Credentials {
            username: "alice".into(),
            password: "s:e:cret".into(),
        };
        c.set("localhost:5000", &creds);
        c.set("docker.io", &creds);
        c.save().unwrap();
        let c2 = DockerConfig::load(&path).unwrap();
        assert_eq!(c2.get("localhost:5000"), Some(creds.clone()));
        assert_eq!(c2.get("docker.io"), Some(creds.clone()));
        let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["credsStore"], "x");
        assert_eq!(
            doc["auths"]["localhost:5000"]["auth"],
            "YWxpY2U6czplOmNyZXQ="
        );
        assert!(doc["auths"]["https://index.docker.io/v1/"].is_object());
        let mut c3 = c2;
        assert!(c3.remove("localhost:5000"));
        assert!(!c3.remove("localhost:5000"));
        assert!(c3.get("localhost:5000").is_none());
        assert!(c3.get("docker.io").is_some());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn logout_forgets_hub_under_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            r#"{"auths":{"docker.io":{"auth":"dTpw"},"registry-1.docker.io":{"auth":"dTpw"},"quay.io":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load(&path).unwrap();
        assert!(c.get("docker.io").is_some());
        assert!(c.remove("docker.io"));
        assert_eq!(c.get("docker.io"), None);
        assert!(c.get("quay.io").is_some());
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn alice() -> Credentials {
        Credentials {
            username: "alice".into(),
            password: "secret".into(),
        }
    }

    /// Finding: the temporary file was opened with create+truncate under a predictable
    /// name: a symlink planted there was followed, and a stale file kept its mode.
    #[test]
    fn save_never_opens_a_planted_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        let path = d.join("config.json");
        fs::write(&path, "{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let old_name = d.join(format!(".config.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_name).unwrap();
        let mut c = DockerConfig::load(&path).unwrap();
        c.set("localhost:5000", &alice());
        c.save().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "victim");
        assert!(fs::symlink_metadata(&old_name)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            DockerConfig::load(&path).unwrap().get("localhost:5000"),
            Some(alice())
        );
        // Nothing else left behind: config.json and the planted link.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
    }

    /// A config.json that is a symlink (dotfiles) is written through, as docker does: the
    /// link stays and its target gets the content (mode 0600, replaced atomically next to
    /// it); a dangling link is replaced rather than followed.
    #[test]
    fn save_writes_through_a_symlinked_config() {
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        let d = dir.path().join("d");
        fs::create_dir(&dotfiles).unwrap();
        fs::create_dir(&d).unwrap();
        let real = dotfiles.join("docker.json");
        fs::write(&real, r#"{"credsStore":"x"}"#).unwrap();
        let link = d.join("config.json");
        std::os::unix::fs::symlink("../dotfiles/docker.json", &link).unwrap();
        let mut c = DockerConfig::load(&link).unwrap();
        c.set("localhost:5000", &alice());
        c.save().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let doc: Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
        assert_eq!(doc["credsStore"], "x");
        assert!(doc["auths"]["localhost:5000"].is_object());
        assert_eq!(mode(&real), 0o600);
        assert_eq!(fs::read_dir(&dotfiles).unwrap().count(), 1);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);

        let dangling = dir.path().join("nowhere.json");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&dangling, &link).unwrap();
        let mut c = DockerConfig::load(&link).unwrap();
        c.set("localhost:5000", &alice());
        c.save().unwrap();
        assert!(!dangling.exists());
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(mode(&link), 0o600);
    }
}
