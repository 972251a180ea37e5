//! Delegation to the IPAM plugin the configuration names (host-local,
//! static, dhcp, ...): found in `CNI_PATH`, run with the same environment
//! and the same configuration, its result or error passed on.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::env::{Env, Verb};
use crate::spec::{CniResult, Error, code};

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
