//! DEL and GC: an attachment's port, veth and lease removed, as far as
//! they still exist; best-effort, and idempotent.

use std::collections::HashSet;

use crate::env::{Env, Verb};
use crate::spec::{Attach, Attachment, Error, NetConf, code};
use crate::store::{Record, Store};
use crate::switch::Switch;
use crate::{ipam, link};

/// DEL: whatever of the attachment remains goes. Missing pieces (the
/// container, its namespace, the port, the record) are not errors. When
/// vswitchd cannot be reached (restarting), the port stays marked in the
/// record and a later ADD, DEL or GC of the network removes it; the lease
/// is released all the same.
pub fn del(conf: &NetConf, raw: &[u8], env: &Env) -> Result<(), Error> {
    let store = Store::open(&conf.data_dir(), &conf.name)?;
    let key = Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let record = store.get(&key)?;
    let mut sw = Switch::connect(&conf.socket()).ok();
    if let Some(sw) = sw.as_mut() {
        remove_pending(&store, sw);
    }
    // Without a record this plugin made nothing (or ADD failed and took
    // back what it made): a port or link of the name it would have used
    // is someone else's. IPAM's DEL runs all the same.
    let removed = match &record {
        Some(r) => release(&store, sw.as_mut(), r)?,
        None => false,
    };
    if let Some(plugin) = conf.ipam_plugin() {
        ipam::delegate(plugin, Verb::Del, env, raw)?;
    }
    if removed {
        store.remove(&key)?;
    }
    Ok(())
}

/// Removes the attachment's port and veth; Ok(false) when vswitchd was
/// away and the record now marks the port as still to remove.
fn release(store: &Store, sw: Option<&mut Switch>, r: &Record) -> Result<bool, Error> {
    let port_gone = match sw {
        Some(sw) => match sw.port_del(&r.port) {
            Ok(()) => true,
            Err(e) if e.code == code::TRY_AGAIN_LATER => false,
            Err(e) => return Err(e),
        },
        None => false,
    };
    if r.attach == Attach::Afxdp {
        link::delete(None, &r.port)?;
    }
    if !port_gone {
        store.put(&Record {
            port_pending: true,
            ..r.clone()
        })?;
    }
    Ok(port_gone)
}

/// Removes the ports earlier DELs could not (vswitchd was away); what
/// still fails stays marked for the next call.
pub fn remove_pending(store: &Store, sw: &mut Switch) {
    for r in store.all().unwrap_or_default() {
        if r.port_pending && sw.port_del(&r.port).is_ok() {
            let _ = store.remove(&r.attachment());
        }
    }
}

/// GC: every attachment of the network not in `cni.dev/valid-attachments`
/// is deleted as DEL would (its lease through IPAM's DEL). Needs vswitchd.
pub fn gc(conf: &NetConf, raw: &[u8], env: &Env) -> Result<(), Error> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(Error::new(
            code::INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments in the configuration",
        ));
    };
    let valid: HashSet<&Attachment> = valid.iter().collect();
    let store = Store::open(&conf.data_dir(), &conf.name)?;
    let mut sw = Switch::connect(&conf.socket())?;
    remove_pending(&store, &mut sw);
    let mut first_error = None;
    for r in store.all()? {
        if valid.contains(&r.attachment()) {
            continue;
        }
        let stale = Env {
            verb: Verb::Del,
            container_id: r.container_id.clone(),
            netns: String::new(),
            ifname: r.ifname.clone(),
            path: env.path.clone(),
        };
        let done = release(&store, Some(&mut sw), &r).and_then(|removed| {
            if let Some(plugin) = conf.ipam_plugin() {
                ipam::delegate(plugin, Verb::Del, &stale, raw)?;
            }
            if removed {
                store.remove(&r.attachment())?;
            }
            Ok(())
        });
        if let Err(e) = done {
            first_error.get_or_insert(e);
        }
    }
    // The IPAM plugin collects what it holds for attachments that are gone
    // (when it speaks GC: 1.1.0).
    if let Some(plugin) = conf.ipam_plugin()
        && let Err(e) = ipam::delegate(plugin, Verb::Gc, env, raw)
    {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}
