//! Device rules: the config's list checked and normalised, folded (as the v1 kernel does) into
//! a default verdict plus exceptions, which both the v1 lists and the v2 BPF program encode.

use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// Which devices a rule covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevKind {
    /// Every device (`a`): such a rule resets the list.
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

/// Access bits: read, write, mknod (the v2 BPF encoding: mknod 1, read 2, write 4).
pub type Access = u8;
/// mknod
pub const MKNOD: Access = 1;
/// read
pub const READ: Access = 2;
/// write
pub const WRITE: Access = 4;
/// all three
pub const RWM: Access = 7;

/// One normalised rule; `None` major/minor is the wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Device type.
    pub kind: DevKind,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// Access bits.
    pub access: Access,
}

fn access_text(a: Access) -> String {
    let mut s = String::new();
    if a & READ != 0 {
        s.push('r');
    }
    if a & WRITE != 0 {
        s.push('w');
    }
    if a & MKNOD != 0 {
        s.push('m');
    }
    s
}

/// Parses an access string (`rwm` in any order); empty means all.
pub fn parse_access(s: &str) -> Result<Access, String> {
    if s.is_empty() {
        return Ok(RWM);
    }
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return Err(format!("bad access {s:?}: use r, w and m")),
        };
    }
    Ok(a)
}

impl fmt::Display for Rule {
    /// The v1 `devices.allow`/`devices.deny` line: `c 1:3 rwm`, `*` for wildcards.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.kind {
            DevKind::All => 'a',
            DevKind::Char => 'c',
            DevKind::Block => 'b',
        };
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_owned(), |v| v.to_string());
        write!(
            f,
            "{t} {}:{} {}",
            n(self.major),
            n(self.minor),
            access_text(self.access)
        )
    }
}

impl Rule {
    /// Checks and normalises `linux.resources.devices[index]`.
    pub fn from_oci(index: usize, d: &LinuxDeviceCgroup) -> Result<Rule> {
        let field = |f: &str| format!("devices[{index}].{f}");
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DevKind::All,
            LinuxDeviceType::C => DevKind::Char,
            LinuxDeviceType::B => DevKind::Block,
            other => {
                return Err(Error::invalid(
                    field("type"),
                    format!(
                        "{:?} cannot be used in a device cgroup rule: use a, b or c",
                        other.as_str()
                    ),
                ))
            }
        };
        // The kernel's dev_t has 12 bits of major and 20 of minor.
        let num = |name: &str, v: Option<i64>, bits: u32| -> Result<Option<u32>> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) if (0..1i64 << bits).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(Error::invalid(
                    field(name),
                    format!(
                        "{n} is out of range (0 to {}, or -1 for any)",
                        (1i64 << bits) - 1
                    ),
                )),
            }
        };
        let access = parse_access(d.access().as_deref().unwrap_or(""))
            .map_err(|r| Error::invalid(field("access"), r))?;
        Ok(Rule {
            allow: d.allow(),
            kind,
            major: num("major", d.major(), 12)?,
            minor: num("minor", d.minor(), 20)?,
            access,
        })
    }

    fn same_device(&self, o: &Rule) -> bool {
        self.kind == o.kind && self.major == o.major && self.minor == o.minor
    }

    /// Whether this rule names the device `(kind, major, minor)`.
    pub fn covers(&self, kind: DevKind, major: u32, minor: u32) -> bool {
        (self.kind == DevKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }

    /// Parses a `devices.list` line (`c 1:3 rwm`, `a *:* rwm`) as an allow rule.
    pub fn parse_v1(line: &str) -> Option<Rule> {
        let mut it = line.split_whitespace();
        let kind = match it.next()? {
            "a" => DevKind::All,
            "c" => DevKind::Char,
            "b" => DevKind::Block,
            _ => return None,
        };
        let (maj, min) = it.next()?.split_once(':')?;
        let n = |s: &str| {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(Rule {
            allow: true,
            kind,
            major: n(maj)?,
            minor: n(min)?,
            access: parse_access(it.next().unwrap_or("")).ok()?,
        })
    }
}

/// The devices every container gets after its configured rules, as runc's `AllowedDevices`:
/// mknod of any device, and null, zero, full, random, urandom, tty, ptmx, the pts and tun.
pub fn default_rules() -> Vec<Rule> {
    let c = |major: Option<u32>, minor: Option<u32>, access| Rule {
        allow: true,
        kind: DevKind::Char,
        major,
        minor,
        access,
    };
    vec![
        c(None, None, MKNOD),
        Rule {
            kind: DevKind::Block,
            ..c(None, None, MKNOD)
        },
        c(Some(1), Some(3), RWM),
        c(Some(1), Some(5), RWM),
        c(Some(1), Some(7), RWM),
        c(Some(1), Some(8), RWM),
        c(Some(1), Some(9), RWM),
        c(Some(5), Some(0), RWM),
        c(Some(5), Some(2), RWM),
        c(Some(136), None, RWM),
        c(Some(10), Some(200), RWM),
    ]
}

/// A device list as the v1 kernel keeps it: a default verdict and exceptions to it. The
/// default value denies everything (the starting point of runc's emulator and of ours).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Whether devices not named by an exception are allowed.
    pub default_allow: bool,
    /// Rules with `allow == !default_allow`, at most one per device (type, major, minor).
    pub exceptions: Vec<Rule>,
}

impl DeviceState {
    /// Folds `rules` in order into the deny-all state, as writing them to `devices.allow` /
    /// `devices.deny` would: an `a` rule resets; a rule agreeing with the default removes its
    /// access from the exception for the same device; one disagreeing adds to it.
    pub fn from_rules<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> DeviceState {
        let mut s = DeviceState::default();
        for r in rules {
            s.apply(r);
        }
        s
    }

    /// Applies one rule.
    pub fn apply(&mut self, r: &Rule) {
        if r.kind == DevKind::All {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        if r.allow == self.default_allow {
            for e in &mut self.exceptions {
                if e.same_device(r) {
                    e.access &= !r.access;
                }
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| e.same_device(r)) {
            e.access |= r.access;
        } else {
            self.exceptions.push(*r);
        }
    }

    /// The verdict for opening/mknod-ing a device with `access`, as the kernel decides it:
    /// in a deny-by-default list one exception must grant every requested bit; in an
    /// allow-by-default list any exception overlapping the request denies it.
    pub fn allows(&self, kind: DevKind, major: u32, minor: u32, access: Access) -> bool {
        let hit = |e: &&Rule| e.covers(kind, major, minor);
        if self.default_allow {
            !self
                .exceptions
                .iter()
                .filter(hit)
                .any(|e| e.access & access != 0)
        } else {
            self.exceptions
                .iter()
                .filter(hit)
                .any(|e| e.access & access == access)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(line: &str, allow: bool) -> Rule {
        Rule {
            allow,
            ..Rule::parse_v1(line).unwrap()
        }
    }

    #[test]
    fn text_round_trip() {
        for l in ["c 1:3 rwm", "b *:* m", "c 136:* rw", "a *:* rwm"] {
            assert_eq!(Rule::parse_v1(l).unwrap().to_string(), l);
        }
        assert_eq!(parse_access("mr").unwrap(), READ | MKNOD);
        assert!(parse_access("x").is_err());
    }

    #[test]
    fn fold_like_the_kernel() {
        let mut rules = vec![
            r("a *:* rwm", false),
            r("c 1:3 rw", true),
            r("c 1:3 m", true),
        ];
        let s = DeviceState::from_rules(&rules);
        assert!(!s.default_allow);
        assert_eq!(s.exceptions, vec![r("c 1:3 rwm", true)]);
        rules.push(r("c 1:3 w", false));
        let s = DeviceState::from_rules(&rules);
        assert_eq!(s.exceptions, vec![r("c 1:3 rm", true)]);
        assert!(s.allows(DevKind::Char, 1, 3, READ));
        assert!(!s.allows(DevKind::Char, 1, 3, READ | WRITE));
        assert!(!s.allows(DevKind::Block, 8, 0, READ));
        let s = DeviceState::from_rules(&[r("a *:* rwm", true), r("b 8:* w", false)]);
        assert!(s.default_allow);
        assert!(!s.allows(DevKind::Block, 8, 1, READ | WRITE));
        assert!(s.allows(DevKind::Block, 8, 1, READ));
        assert!(s.allows(DevKind::Char, 8, 1, WRITE));
    }

    #[test]
    fn oci_rules_are_checked() {
        let d: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":1,"minor":-1}"#).unwrap();
        let rule = Rule::from_oci(0, &d).unwrap();
        assert_eq!(rule.to_string(), "c 1:* rwm");
        let d: LinuxDeviceCgroup = serde_json::from_str(r#"{"allow":true,"type":"p"}"#).unwrap();
        assert!(Rule::from_oci(3, &d)
            .unwrap_err()
            .to_string()
            .contains("devices[3].type"));
        let d: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"major":-5,"access":"rw"}"#).unwrap();
        assert!(Rule::from_oci(0, &d)
            .unwrap_err()
            .to_string()
            .contains("major"));
        let d: LinuxDeviceCgroup = serde_json::from_str(r#"{"allow":true,"access":"rx"}"#).unwrap();
        assert!(Rule::from_oci(0, &d)
            .unwrap_err()
            .to_string()
            .contains("access"));
    }
}
