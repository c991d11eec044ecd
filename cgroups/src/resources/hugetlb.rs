//! `linux.resources.hugepageLimits`: v1 `hugetlb.<size>.limit_in_bytes`, v2
//! `hugetlb.<size>.max` (and the `.rsvd` variants where the kernel has them).

use oci_spec::runtime::LinuxHugepageLimit;

use super::{check_limit, Target};
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = t.dir("hugetlb", "hugepageLimits")?;
    for (i, l) in limits.iter().enumerate() {
        let field = format!("hugepageLimits[{i}]");
        let size = l.page_size();
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                &field,
                format!("bad page size {size:?} (e.g. \"2MB\")"),
            ));
        }
        let limit = check_limit(&field, l.limit())?;
        let (file, rsvd, value) = if t.v2() {
            let v = if limit == -1 {
                "max".to_owned()
            } else {
                limit.to_string()
            };
            (
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
                v,
            )
        } else {
            (
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                limit.to_string(),
            )
        };
        if !fsutil::exists(dir, &file) {
            return Err(Error::unsupported(
                field,
                format!(
                    "page size {size} is not supported here (no {})",
                    dir.join(&file).display()
                ),
            ));
        }
        fsutil::write(dir, &file, &value)?;
        if fsutil::exists(dir, &rsvd) {
            fsutil::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}
