//! Tar headers for committed layers: a POSIX ustar header per entry, preceded by a PAX
//! extended header (`x`) when the entry's name, link target, ids, size or mtime do not fit
//! ustar's fields, or when it carries xattrs (`SCHILY.xattr.<name>`, as Go's `archive/tar`,
//! GNU tar and containerd write them).
//!
//! Written here rather than with the `tar` crate's `Header`/`Builder`: the crate rewrites
//! paths (it strips `./`, refuses `..` and non-UTF-8 names on some paths), picks GNU long-name
//! extensions (`././@LongLink`) rather than PAX for long names, and encodes big numbers in
//! GNU base-256; here every byte of the stream is chosen by this module, so a layer's DiffID
//! depends on the tree only. It is about a hundred lines of field encoding with no
//! allocation per entry beyond the PAX records.

/// A tar block.
pub(super) const BLOCK: usize = 512;

/// Typeflags of the entries a committed layer holds.
pub(super) mod kind {
    pub(in crate::store::commit) const FILE: u8 = b'0';
    pub(in crate::store::commit) const LINK: u8 = b'1';
    pub(in crate::store::commit) const SYMLINK: u8 = b'2';
    pub(in crate::store::commit) const CHAR: u8 = b'3';
    pub(in crate::store::commit) const BLOCK: u8 = b'4';
    pub(in crate::store::commit) const DIR: u8 = b'5';
    pub(in crate::store::commit) const FIFO: u8 = b'6';
    pub(in crate::store::commit) const PAX: u8 = b'x';
}

/// What one entry's header says.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Meta<'a> {
    /// Path inside the layer, relative, `/`-separated; directories end with `/`.
    pub(super) name: &'a [u8],
    /// Typeflag ([`kind`]).
    pub(super) kind: u8,
    /// Permission bits, with setuid, setgid and sticky.
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    /// Bytes of data following the header (regular files only).
    pub(super) size: u64,
    /// Seconds since the epoch (negative times are written as 0).
    pub(super) mtime: i64,
    /// Hardlink or symlink target.
    pub(super) link: &'a [u8],
    /// Device numbers (character and block devices).
    pub(super) dev: (u32, u32),
    /// Extended attributes, in the order to write them.
    pub(super) xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes `v` as zero-padded octal filling `field` but its last byte (a NUL); false if it
/// does not fit.
fn octal(field: &mut [u8], mut v: u64) -> bool {
    let digits = field.len() - 1;
    if digits < 22 && v >> (3 * digits) != 0 {
        return false;
    }
    for b in field[..digits].iter_mut().rev() {
        *b = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
    true
}

/// Appends one PAX record (`<len> <key>=<value>\n`, `len` counting itself).
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len.to_string().len() + base != len {
        len = len.to_string().len() + base;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits a name too long for ustar's name field into its prefix (at most 155 bytes) and
/// name (at most 100) at a `/`, if it can be.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = name.strip_suffix(b"/").unwrap_or(name);
    (1..body.len())
        .rev()
        .filter(|&i| body[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// Fills a ustar header block; fields already zero stay so.
fn ustar(hdr: &mut [u8; BLOCK], kind: u8, mode: u32, ids: (u64, u64), size: u64, mtime: u64) {
    octal(&mut hdr[100..108], u64::from(mode & 0o7777));
    octal(&mut hdr[108..116], ids.0);
    octal(&mut hdr[116..124], ids.1);
    octal(&mut hdr[124..136], size);
    octal(&mut hdr[136..148], mtime);
    hdr[156] = kind;
    hdr[257..263].copy_from_slice(b"ustar\0");
    hdr[263..265].copy_from_slice(b"00");
}

/// Computes and stores the header's checksum.
fn checksum(hdr: &mut [u8; BLOCK]) {
    hdr[148..156].fill(b' ');
    let sum: u64 = hdr.iter().map(|&b| u64::from(b)).sum();
    octal(&mut hdr[148..155], sum);
    hdr[155] = b' ';
}

/// Appends the header block(s) of `m` to `out`: a PAX header and its records first when
/// needed, then the ustar header.
pub(super) fn encode(m: &Meta<'_>, out: &mut Vec<u8>) {
    let mut hdr = [0u8; BLOCK];
    let mut pax = Vec::new();
    if m.name.len() <= 100 {
        hdr[..m.name.len()].copy_from_slice(m.name);
    } else if let Some((prefix, name)) = split_ustar(m.name) {
        hdr[345..345 + prefix.len()].copy_from_slice(prefix);
        hdr[..name.len()].copy_from_slice(name);
    } else {
        pax_record(&mut pax, b"path", m.name);
        let keep = m.name.len().min(100);
        hdr[..keep].copy_from_slice(&m.name[..keep]);
    }
    if m.link.len() <= 100 {
        hdr[157..157 + m.link.len()].copy_from_slice(m.link);
    } else {
        pax_record(&mut pax, b"linkpath", m.link);
        hdr[157..257].copy_from_slice(&m.link[..100]);
    }
    let mtime = u64::try_from(m.mtime).unwrap_or(0);
    // Numbers too big for ustar go to PAX records (in this fixed order) and are 0 in ustar.
    let mut nums = [
        (m.uid, 7, "uid"),
        (m.gid, 7, "gid"),
        (m.size, 11, "size"),
        (mtime, 11, "mtime"),
    ];
    for (v, digits, key) in &mut nums {
        if *v >> (3 * *digits) != 0 {
            pax_record(&mut pax, key.as_bytes(), v.to_string().as_bytes());
            *v = 0;
        }
    }
    for (k, v) in m.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax_record(&mut pax, &key, v);
    }
    let [uid, gid, size, mtime] = nums.map(|n| n.0);
    ustar(&mut hdr, m.kind, m.mode, (uid, gid), size, mtime);
    if m.kind == kind::CHAR || m.kind == kind::BLOCK {
        octal(&mut hdr[329..337], u64::from(m.dev.0));
        octal(&mut hdr[337..345], u64::from(m.dev.1));
    }
    checksum(&mut hdr);
    if !pax.is_empty() {
        let mut x = [0u8; BLOCK];
        let name = b"././@PaxHeader";
        x[..name.len()].copy_from_slice(name);
        ustar(&mut x, kind::PAX, 0o644, (0, 0), pax.len() as u64, 0);
        checksum(&mut x);
        out.extend_from_slice(&x);
        let padded = pax.len().div_ceil(BLOCK) * BLOCK;
        out.extend_from_slice(&pax);
        out.resize(out.len() + padded - pax.len(), 0);
    }
    out.extend_from_slice(&hdr);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [0usize, 1, 5, 6, 7, 90, 95, 96, 97, 990, 995, 996, 997] {
            let mut out = Vec::new();
            pax_record(&mut out, b"k", &vec![b'v'; n]);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn names_split_or_go_to_pax() {
        let long_dir = format!("{}/{}/", "a".repeat(120), "b".repeat(90));
        let (p, n) = split_ustar(long_dir.as_bytes()).unwrap();
        assert_eq!((p.len(), n.len()), (120, 91));
        assert!(split_ustar("c".repeat(200).as_bytes()).is_none());
        let mut out = Vec::new();
        let name = "d".repeat(300);
        encode(
            &Meta {
                name: name.as_bytes(),
                kind: kind::FILE,
                uid: 1 << 30,
                ..Meta::default()
            },
            &mut out,
        );
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(out[156], kind::PAX);
    }
}
