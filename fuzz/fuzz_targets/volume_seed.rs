//! Volume seeding (`volume::seed`: the image's content at a volume's path copied into the
//! fresh volume, bounded by a `SeedBudget`) and the runtime's `tmpcopyup` copy
//! (`copy::copy_tree`) of the same directory, from a root filesystem extracted from the
//! input's tar (hostile names, symlinks out of the root, hardlinks) plus what the input asks
//! for: a sparse file, a FIFO, a symlink out, a directory nested past seeding's depth limit.
//!
//! Never a panic, and nothing is created outside the sandbox. A non-empty volume is left
//! alone. Seeding that fails leaves the volume empty; seeding that succeeds makes a copy of
//! the directory the path names inside the root filesystem (resolved as `openat2`'s
//! `RESOLVE_IN_ROOT` does: a symlink never leads out): the same names, kinds, contents, sizes,
//! modes, owners and symlink targets, without devices, FIFOs and sockets; a path that is not
//! a directory there seeds nothing. `copy_tree` that succeeds copies the same names, kinds,
//! contents and symlink targets.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use berth_image::extract::extract_layer_single_thread;
use berth_image::volume::{seed, SeedBudget};
use berth_image::{ExtractOptions, Mode};
use common::{tree, Input, Node, Sandbox, TreeOpts};

const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/b",
    "/b",
    "/l",
    "/l/x",
    "/../outside",
    "/a/../..",
    "/deep",
    "",
    "a",
    "/sparse",
    "/a/b/c",
];

/// `path` opened as a directory inside `root` the way seeding resolves it.
fn open_in_root(root: &Path, path: &str) -> Option<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let root = std::fs::File::open(root).ok()?;
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Some(root.into());
    }
    let c = std::ffi::CString::new(rel).ok()?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        // RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_IN_ROOT
        resolve: 0x01 | 0x02 | 0x10,
    };
    loop {
        // SAFETY: openat2 with a valid dirfd, path and open_how of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                std::os::fd::AsRawFd::as_raw_fd(&root),
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new fd that nothing else owns.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        // EAGAIN: a rename anywhere raced with resolving `..`; try again.
        let errno = std::io::Error::last_os_error().raw_os_error();
        if errno != Some(libc::EAGAIN) && errno != Some(libc::EINTR) {
            return None;
        }
    }
}

/// A tree without what seeding skips (devices, FIFOs, sockets).
fn seedable(t: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    t.into_iter()
        .filter(|(_, n)| !matches!(n, Node::Other { .. } | Node::Xattr(_)))
        .collect()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("a path");
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let path = *input.pick(PATHS);
    let max_bytes = u64::from(input.u16()) * 64;
    let max_entries = u64::from(input.byte());
    let layer = common::build_tar(input.rest());

    let sb = Sandbox::new("seed");
    let rootfs = sb.dest.join("rootfs");
    let vol = sb.dest.join("vol");
    let copy = sb.dest.join("copy");
    for d in [&rootfs, &vol, &copy] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let opts = ExtractOptions {
        mode: Mode::Flatten,
        limits: common::small_limits(),
        ..Default::default()
    };
    let _ = extract_layer_single_thread(&layer[..], &rootfs, &opts);
    // What the input asks for beside the layer (best effort: the layer may be in the way).
    if flags & 1 != 0 {
        if let Ok(f) = std::fs::File::create(rootfs.join("sparse")) {
            use std::os::unix::fs::FileExt;
            let _ = f.set_len(2 << 20);
            let _ = f.write_all_at(b"head", 0);
            let _ = f.write_all_at(b"tail", (2 << 20) - 4);
        }
    }
    if flags & 2 != 0 {
        mkfifo(&rootfs.join("fifo"));
        // Not through a symlink the layer made (`a -> ../outside`).
        let a = rootfs.join("a");
        let real_dir = std::fs::symlink_metadata(&a)
            .map_or_else(|_| std::fs::create_dir(&a).is_ok(), |m| m.is_dir());
        if real_dir {
            mkfifo(&a.join("fifo"));
        }
    }
    if flags & 4 != 0 {
        let _ = std::os::unix::fs::symlink("../../outside", rootfs.join("out"));
    }
    // Only for the path that needs it: a tree this deep costs a good part of a second.
    if flags & 8 != 0 && path == "/deep" {
        let mut p = rootfs.join("deep");
        for _ in 0..(500 + usize::from(flags >> 4) * 2) {
            p.push("d");
        }
        let _ = std::fs::create_dir_all(&p);
    }
    let prefilled = flags & 0x10 != 0;
    if prefilled {
        std::fs::write(vol.join("keep"), b"mine").expect("write");
    }
    let before = tree(&vol, TreeOpts::default());

    let limits = berth_image::Limits {
        max_volume_bytes: max_bytes,
        max_entries: if flags & 0x20 != 0 { max_entries } else { 4096 },
        ..common::small_limits()
    };
    let mut budget = SeedBudget::new(&limits);
    let res = seed(&rootfs, path, &vol, &mut budget);
    sb.check();
    let meta = TreeOpts {
        meta: true,
        ..Default::default()
    };
    let source = open_in_root(&rootfs, path);
    let source_path = source
        .as_ref()
        .map(|fd| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)));
    if prefilled {
        assert_eq!(
            tree(&vol, TreeOpts::default()),
            before,
            "a volume with data was seeded"
        );
    } else {
        match &res {
            Err(_) => assert!(
                tree(&vol, TreeOpts::default()).is_empty(),
                "a failed seeding left data in the volume ({res:?})"
            ),
            Ok(()) => {
                let want = source_path
                    .as_ref()
                    .map(|p| seedable(tree(Path::new(p), meta)))
                    .unwrap_or_default();
                let got = tree(&vol, meta);
                assert!(
                    got == want,
                    "seeding {path:?} copied\n{got:#?}\nfrom\n{want:#?}"
                );
                assert!(
                    budget.bytes() <= max_bytes,
                    "{} bytes over a budget of {max_bytes}",
                    budget.bytes()
                );
            }
        }
    }

    // tmpcopyup of the same directory into another one.
    if let Some(src) = &source {
        let dst = std::fs::File::open(&copy).expect("open");
        let copied = berth_runtime::copy::copy_tree(src.as_fd(), dst.as_fd());
        sb.check();
        if copied.is_ok() {
            let plain = TreeOpts::default();
            let want = seedable(tree(Path::new(source_path.as_deref().unwrap_or("")), plain));
            let got = tree(&copy, plain);
            assert!(
                got == want,
                "tmpcopyup of {path:?} copied\n{got:#?}\nfrom\n{want:#?}"
            );
        }
    }
});
