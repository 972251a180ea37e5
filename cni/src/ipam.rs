//! Delegation to the IPAM plugin the configuration names (host-local,
//! static, dhcp, ...): found in `CNI_PATH`, run with the same environment
//! and the same configuration, its result or error passed on. A plugin
//! that does not speak the configuration's version (Debian 12's plugins
//! stop at 1.0.0, and GC and STATUS need 1.1.0) is given the configuration
//! in the newest version it does speak: the IPAM messages did not change
//! from 0.4.0 to 1.1.0.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::env::{Env, Verb};
use crate::spec::{CniResult, Error, SUPPORTED, code, version};

/// Runs the IPAM plugin `plugin` for `verb` with the configuration `conf`
/// (the bytes the runtime gave). ADD returns its result (a result this
/// plugin cannot use is an error, and the lease goes back); the other
/// verbs return `None` on success. GC and STATUS go only to a plugin that
/// speaks them (1.1.0); to one that does not, they are nothing to do.
pub fn delegate(
    plugin: &str,
    verb: Verb,
    env: &Env,
    conf: &[u8],
) -> Result<Option<CniResult>, Error> {
    let bin = find(plugin, &env.path)?;
    let mut value: serde_json::Value = serde_json::from_slice(conf).map_err(|e| {
        Error::new(code::DECODE, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    let ours = value["cniVersion"].as_str().unwrap_or_default().to_string();
    let theirs = versions(&bin, &ours);
    if matches!(verb, Verb::Gc | Verb::Status)
        && !theirs.iter().any(|v| version(v) >= version("1.1.0"))
    {
        return Ok(None);
    }
    let conf = if theirs.is_empty() || theirs.contains(&ours) {
        conf.to_vec()
    } else {
        let common = theirs
            .iter()
            .filter(|v| SUPPORTED.contains(&v.as_str()))
            .filter(|v| version(v) >= version("0.4.0") && version(v) <= version(&ours))
            .max_by_key(|v| version(v))
            .ok_or_else(|| {
                Error::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "the IPAM plugin {plugin} speaks {} and not {ours}",
                        theirs.join(", ")
                    ),
                )
            })?;
        value["cniVersion"] = common.clone().into();
        serde_json::to_vec(&value).expect("JSON serialises")
    };
    let out = run(&bin, plugin, verb, env, &conf)?;
    if verb != Verb::Add {
        return Ok(None);
    }
    let result = serde_json::from_slice::<serde_json::Value>(&out)
        .map_err(|e| {
            Error::new(
                code::IPAM,
                format!("the IPAM plugin {plugin} printed no result"),
            )
            .with_details(e.to_string())
        })
        .and_then(|v| CniResult::from_value(&v))
        .and_then(|r| {
            if r.ips.is_empty() {
                Err(Error::new(
                    code::IPAM,
                    format!("the IPAM plugin {plugin} gave no address"),
                ))
            } else {
                Ok(r)
            }
        });
    if result.is_err() {
        // Whatever it leased goes back.
        let _ = run(&bin, plugin, Verb::Del, env, &conf);
    }
    result.map(Some)
}

/// Runs the plugin at `bin` for `verb`; its stdout, or its error.
fn run(
    bin: &std::path::Path,
    plugin: &str,
    verb: Verb,
    env: &Env,
    conf: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", verb.name())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env(
            "CNI_PATH",
            std::env::join_paths(&env.path).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(
                code::IO,
                format!("cannot run the IPAM plugin {}", bin.display()),
            )
            .with_details(e.to_string())
        })?;
    // The plugin may exit before reading everything (a refusal); its
    // answer says why, so a broken pipe here is not the error to report.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(conf);
    }
    let out = child.wait_with_output().map_err(|e| {
        Error::new(code::IO, format!("the IPAM plugin {plugin} failed")).with_details(e.to_string())
    })?;
    if !out.status.success() {
        return Err(plugin_error(plugin, verb, &out.stdout, &out.stderr));
    }
    Ok(out.stdout)
}

/// The versions the plugin at `bin` says it speaks (empty when it does
/// not answer VERSION).
fn versions(bin: &std::path::Path, ours: &str) -> Vec<String> {
    let out = Command::new(bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(format!("{{\"cniVersion\":\"{ours}\"}}").as_bytes());
            }
            child.wait_with_output()
        });
    out.ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| serde_json::from_value(v["supportedVersions"].clone()).ok())
        .unwrap_or_default()
}

/// The plugin's own CNI error, passed on with its code, or one made from
/// what it printed.
fn plugin_error(plugin: &str, verb: Verb, stdout: &[u8], stderr: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct PluginError {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<PluginError>(stdout) {
        return Error::new(
            e.code,
            format!("IPAM ({plugin}, {}): {}", verb.name(), e.msg),
        )
        .with_details(e.details);
    }
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    Error::new(
        code::IPAM,
        format!("the IPAM plugin {plugin} failed ({})", verb.name()),
    )
    .with_details(text.trim().to_string())
}

/// The plugin's executable in the first directory of `path` that has it.
fn find(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    path.iter()
        .map(|dir| dir.join(plugin))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
            // No CNI_PATH at all is the environment's fault, not the
            // configuration's.
            Error::new(
                if path.is_empty() {
                    code::INVALID_ENV
                } else {
                    code::INVALID_CONFIG
                },
                format!(
                    "IPAM plugin '{plugin}' not found in CNI_PATH ({})",
                    if dirs.is_empty() {
                        "empty".to_string()
                    } else {
                        dirs.join(":")
                    }
                ),
            )
        })
}
