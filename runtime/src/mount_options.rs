//! Mount options of `config.json` (fstab-style strings) turned into mount(2) flags, propagation
//! changes, recursive attributes (mount_setattr) and filesystem data.

use berth_sys::mount::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME,
};
use nix::mount::MsFlags;

use crate::error::{Error, Result};

/// Recursive attributes applied with `mount_setattr(AT_RECURSIVE)` (the `r*` options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    /// `MOUNT_ATTR_*` bits to set.
    pub set: u64,
    /// `MOUNT_ATTR_*` bits to clear.
    pub clear: u64,
}

/// A parsed option list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// Flags explicitly cleared (`rw`, `suid`, ...), relevant when remounting binds.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes.
    pub recursive: RecursiveAttrs,
    /// Filesystem-specific data, comma-joined.
    pub data: String,
    /// `tmpcopyup`: copy the covered directory's content into a new tmpfs.
    pub tmpcopyup: bool,
    /// `idmap` / `ridmap`: an idmapped bind mount (recursive for `ridmap`).
    pub idmap: Option<Idmap>,
}

/// The two idmapped-mount options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idmap {
    /// `idmap`: only the top mount is idmapped.
    Top,
    /// `ridmap`: the whole tree is.
    Recursive,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            recursive: RecursiveAttrs::default(),
            data: String::new(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

impl MountOptions {
    /// Whether this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Flags that need a second `MS_REMOUNT` pass after a bind mount.
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// Parses the options of `mounts[index]`.
pub fn parse(options: &[String], index: usize) -> Result<MountOptions> {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_str();
        if let Some((set, flag)) = flag_option(opt) {
            if set {
                o.flags |= flag;
                o.cleared -= flag;
            } else {
                o.flags -= flag;
                o.cleared |= flag;
            }
        } else if let Some(p) = propagation_option(opt) {
            o.propagation.push(p);
        } else if let Some((set, attr)) = recursive_option(opt) {
            if set {
                if attr & MOUNT_ATTR_ATIME_MASK != 0 || opt == "rrelatime" {
                    o.recursive.clear |= MOUNT_ATTR_ATIME_MASK;
                }
                o.recursive.set |= attr;
            } else if attr & MOUNT_ATTR_ATIME_MASK != 0 {
                // The atime modes are an enum, not bits: mount_setattr takes a clear of one
                // only as a clear of the whole mask (EINVAL otherwise), leaving relatime.
                o.recursive.clear |= MOUNT_ATTR_ATIME_MASK;
            } else {
                o.recursive.clear |= attr;
            }
        } else if opt == "tmpcopyup" {
            o.tmpcopyup = true;
        } else if opt == "idmap" {
            o.idmap = Some(Idmap::Top);
        } else if opt == "ridmap" {
            o.idmap = Some(Idmap::Recursive);
        } else if opt.starts_with("idmap=") || opt.starts_with("ridmap=") {
            return Err(Error::Unsupported(format!(
                "mounts[{index}].options: {opt:?}: give the mappings in the mount's uidMappings/gidMappings"
            )));
        } else if opt.is_empty() {
            return Err(Error::config(
                format!("mounts[{index}].options"),
                "empty option",
            ));
        } else {
            data.push(opt);
        }
    }
    o.data = data.join(",");
    Ok(o)
}

fn flag_option(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "atime" => (false, MsFlags::MS_NOATIME),
        "bind" => (true, MsFlags::MS_BIND),
        "defaults" => (true, MsFlags::empty()),
        "dev" => (false, MsFlags::MS_NODEV),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "iversion" => (true, MsFlags::MS_I_VERSION),
        "lazytime" => (true, MsFlags::MS_LAZYTIME),
        "loud" => (false, MsFlags::MS_SILENT),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "nodev" => (true, MsFlags::MS_NODEV),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "noiversion" => (false, MsFlags::MS_I_VERSION),
        "nolazytime" => (false, MsFlags::MS_LAZYTIME),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "nosymfollow" => (true, MsFlags::from_bits_retain(0x100)),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "remount" => (true, MsFlags::MS_REMOUNT),
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "silent" => (true, MsFlags::MS_SILENT),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "suid" => (false, MsFlags::MS_NOSUID),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "symfollow" => (false, MsFlags::from_bits_retain(0x100)),
        _ => return None,
    })
}

/// Propagation flags for a propagation option name (also used for `rootfsPropagation`).
pub fn propagation_option(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

fn recursive_option(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (true, MOUNT_ATTR_RDONLY),
        "rrw" => (false, MOUNT_ATTR_RDONLY),
        "rnosuid" => (true, MOUNT_ATTR_NOSUID),
        "rsuid" => (false, MOUNT_ATTR_NOSUID),
        "rnodev" => (true, MOUNT_ATTR_NODEV),
        "rdev" => (false, MOUNT_ATTR_NODEV),
        "rnoexec" => (true, MOUNT_ATTR_NOEXEC),
        "rexec" => (false, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (true, MOUNT_ATTR_RELATIME),
        "rnorelatime" => (false, MOUNT_ATTR_ATIME_MASK),
        "rnoatime" => (true, MOUNT_ATTR_NOATIME),
        "ratime" => (false, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (false, MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(
            &opts.iter().map(|s| (*s).to_string()).collect::<Vec<_>>(),
            0,
        )
        .unwrap()
    }

    #[test]
    fn engine_options() {
        let o = p(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        let o = p(&["rbind", "rprivate", "ro"]);
        assert!(o.is_bind());
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let o = p(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = p(&["rro", "rnoexec"]);
        assert_eq!(o.recursive.set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC);
        for clear in ["ratime", "rnostrictatime", "rnorelatime"] {
            let o = p(&[clear]);
            assert_eq!(o.recursive.clear, MOUNT_ATTR_ATIME_MASK, "{clear}");
            assert_eq!(o.recursive.set, 0, "{clear}");
        }
    }

    #[test]
    fn idmap_options() {
        assert_eq!(p(&["bind", "idmap"]).idmap, Some(Idmap::Top));
        assert_eq!(p(&["rbind", "ridmap"]).idmap, Some(Idmap::Recursive));
        let e = parse(&["idmap=uids=0-1-2".to_string()], 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounts[3]"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(opts in proptest::collection::vec(".{0,12}", 0..8)) {
            let _ = parse(&opts, 0);
        }
    }
}
