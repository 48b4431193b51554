//! The owner's view of their key's apps (`list_apps`) and decisions
//! (`get_log`), one page at a time: a page stays well inside a NIP-44
//! message, and its `next` is the cursor of the following page.

use nostr::PublicKey;
use verifier::grant::wire::Page;

use crate::custody::KeyStore;

/// The page of `user`'s apps from position `cursor`, oldest grant first;
/// `None` if the key is not held.
pub fn list_apps(store: &KeyStore, user: &PublicKey, cursor: Option<u64>) -> Option<String> {
    let key = store.get(user)?;
    let mut apps: Vec<_> = key.apps().map(|(app, a)| a.view(app)).collect();
    apps.sort_by(|a, b| (a.since, &a.app).cmp(&(b.since, &b.app)));
    let from = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
    let page = Page::fill(
        apps.into_iter()
            .enumerate()
            .skip(from)
            .map(|(i, a)| (i as u64, a)),
    );
    Some(page.to_json())
}

/// The page of `user`'s decision log from entry `cursor` on, oldest
/// first; `None` if the key is not held.
pub fn get_log(store: &KeyStore, user: &PublicKey, cursor: Option<u64>) -> Option<String> {
    store.get(user)?;
    let entries = store.log().entries(user, cursor.unwrap_or(0));
    let page = Page::fill(entries.into_iter().map(|e| {
        let view = e.view();
        (view.seq, view)
    }));
    Some(page.to_json())
}
