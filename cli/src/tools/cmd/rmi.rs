//! `berth rmi` and `berth image rm`: every image named is removed that can be, as docker
//! does; each one that cannot (not in the store, ambiguous...) is reported on stderr, and the
//! status is then 1.

use anyhow::Result;
use berth_engine::find_image;

use super::Ctx;

/// Removes each of `names`; 0 if all went, else 1.
pub fn remove_each(cx: &Ctx, names: &[String]) -> Result<u8> {
    let store = cx.engine.open_store()?;
    let mut failed = false;
    for name in names {
        let removed = find_image(&store, name)
            .map_err(anyhow::Error::from)
            .and_then(|r| Ok(store.remove_image(&r.name).map(|_| r.name)?));
        match removed {
            Ok(removed) => println!("removed {removed}"),
            Err(e) => {
                failed = true;
                // Logged as a failed command's error is (see startup::report).
                tracing::error!("{}", berth_runtime::error::render(e.as_ref()));
            }
        }
    }
    Ok(u8::from(failed))
}
