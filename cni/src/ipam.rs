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
/// (the bytes the runtime gave). ADD returns its result; the other verbs
/// return `None` on success.
pub fn delegate(
    plugin: &str,
    verb: Verb,
    env: &Env,
    conf: &[u8],
) -> Result<Option<CniResult>, Error> {
    let bin = find(plugin, &env.path)?;
    let conf = &in_version_of(&bin, conf)?;
    let mut child = Command::new(&bin)
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
    if verb != Verb::Add {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::new(
            code::IPAM,
            format!("the IPAM plugin {plugin} printed no result"),
        )
        .with_details(e.to_string())
    })?;
    let result = CniResult::from_value(&value)?;
    if result.ips.is_empty() {
        return Err(Error::new(
            code::IPAM,
            format!("the IPAM plugin {plugin} gave no address"),
        ));
    }
    Ok(Some(result))
}

/// `conf` in a version the plugin at `bin` speaks: as it is when the
/// plugin speaks its version, else with `cniVersion` set to the newest
/// version from 0.4.0 on that both speak.
fn in_version_of(bin: &std::path::Path, conf: &[u8]) -> Result<Vec<u8>, Error> {
    let mut value: serde_json::Value = serde_json::from_slice(conf).map_err(|e| {
        Error::new(code::DECODE, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    let ours = value["cniVersion"].as_str().unwrap_or_default().to_string();
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
        })
        .map_err(|e| {
            Error::new(
                code::IO,
                format!("cannot run the IPAM plugin {}", bin.display()),
            )
            .with_details(e.to_string())
        })?;
    let theirs: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| serde_json::from_value(v["supportedVersions"].clone()).ok())
        .unwrap_or_default();
    if theirs.is_empty() || theirs.contains(&ours) {
        return Ok(conf.to_vec());
    }
    let common = theirs
        .iter()
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .filter(|v| version(v) >= version("0.4.0") && version(v) <= version(&ours))
        .max_by_key(|v| version(v));
    let Some(common) = common else {
        return Err(Error::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "the IPAM plugin {} speaks {} and not {ours}",
                bin.display(),
                theirs.join(", ")
            ),
        ));
    };
    value["cniVersion"] = common.clone().into();
    Ok(serde_json::to_vec(&value).expect("JSON serialises"))
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
            Error::new(
                code::INVALID_CONFIG,
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
