//! Idmapped bind mounts (`idmap` / `ridmap`, MOUNT_ATTR_IDMAP). Setting the idmap needs
//! privileges over the filesystem that only the host-side parent has, so the parent builds
//! each tree detached (open_tree + mount_setattr) and hands its fd to the init, which attaches
//! it inside the rootfs with move_mount.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use berth_sys::mount::{MountAttr, Tree, MOUNT_ATTR_IDMAP};
use oci_spec::runtime::LinuxIdMapping;

use crate::error::{Context, Error, Result};
use crate::mount_options::Idmap;
use crate::rootfs::MountPlan;

/// Builds a detached idmapped tree for every `idmap`/`ridmap` mount, in mount order. A mount
/// without its own mappings uses the container's user namespace (that of `init_pid`).
pub fn detached_trees(
    mounts: &[MountPlan],
    init_pid: i32,
    container_userns: bool,
) -> Result<Vec<OwnedFd>> {
    let mut trees = Vec::new();
    for m in mounts.iter().filter(|m| m.options.idmap.is_some()) {
        let field = format!("mounts[{}]", m.index);
        let source = m
            .source
            .as_ref()
            .ok_or_else(|| Error::config(&field, "an idmapped mount needs a bind source"))?;
        let tree = if m.options.idmap == Some(Idmap::Recursive) {
            Tree::Recursive
        } else {
            Tree::Single
        };
        let userns = if m.uid_mappings.is_empty() {
            if !container_userns {
                return Err(Error::config(
                    format!("{field}.uidMappings"),
                    "an idmapped mount needs mappings, or a container user namespace to take them from",
                ));
            }
            std::fs::File::open(format!("/proc/{init_pid}/ns/user"))
                .ctx(|| "opening the container's user namespace".to_string())?
                .into()
        } else {
            userns_with_maps(&m.uid_mappings, &m.gid_mappings).map_err(|e| annotate(e, &field))?
        };
        let detached = berth_sys::mount::clone_tree(source, tree)
            .ctx(|| format!("{field}: open_tree {}", source.display()))?;
        let attr = MountAttr {
            set: MOUNT_ATTR_IDMAP,
            userns: Some(userns.as_fd()),
            ..MountAttr::default()
        };
        berth_sys::mount::mount_setattr(detached.as_fd(), tree, &attr).ctx(|| {
            format!("{field}: mount_setattr(MOUNT_ATTR_IDMAP) (does the filesystem support idmapped mounts?)")
        })?;
        trees.push(detached);
    }
    Ok(trees)
}

fn annotate(e: Error, field: &str) -> Error {
    match e {
        Error::Io { context, err } => Error::Io {
            context: format!("{field}: {context}"),
            err,
        },
        e => e,
    }
}

/// Attaches a detached tree at `target` (an `O_PATH` fd inside the rootfs).
pub fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<()> {
    berth_sys::mount::move_mount(tree.as_fd(), target.as_fd())
        .ctx(|| "move_mount of the idmapped tree".to_string())
}

/// A user namespace carrying `uids`/`gids`: a short-lived child unshares it, the parent writes
/// its maps and keeps a descriptor of it.
fn userns_with_maps(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe().ctx(|| "pipe".to_string())?;
    // SAFETY: berth is single-threaded; the child only unshares, blocks on a read and exits.
    match unsafe { nix::unistd::fork() }.ctx(|| "fork".to_string())? {
        nix::unistd::ForkResult::Child => {
            drop(w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(r.as_raw_fd(), &mut b);
            // SAFETY: _exit ends the helper without running the parent's destructors.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(r);
            let pid = child.as_raw();
            let result = (|| {
                // Wait until the child is in its own user namespace.
                let ours = std::fs::read_link("/proc/self/ns/user")
                    .ctx(|| "reading our user namespace".to_string())?;
                for _ in 0..1000 {
                    if std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|n| n != ours) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                std::fs::write(
                    format!("/proc/{pid}/uid_map"),
                    crate::namespaces::id_map_text(uids),
                )
                .ctx(|| "writing uid_map".to_string())?;
                std::fs::write(
                    format!("/proc/{pid}/gid_map"),
                    crate::namespaces::id_map_text(gids),
                )
                .ctx(|| "writing gid_map".to_string())?;
                let ns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/user"))
                    .ctx(|| "opening the mapping namespace".to_string())?
                    .into();
                Ok(ns)
            })();
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}
