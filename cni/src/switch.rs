//! vswitchd, over its control socket: the requests the plugin makes and
//! how their failures map to CNI error codes.

use std::path::Path;

use ctl::{AddrInfo, Client, ClientError, Command, PortInfo, PortSpec, Reply, RouteInfo};

use crate::spec::{Error, code};

/// A connection to vswitchd.
pub struct Switch {
    client: Client,
}

/// A client failure as a CNI error: vswitchd away or restarting is "try
/// again later" (11); a refusal is ours (100).
fn error(e: ClientError, what: &str) -> Error {
    let c = match e {
        ClientError::Connect { .. } | ClientError::Closed | ClientError::Io(_) => {
            code::TRY_AGAIN_LATER
        }
        ClientError::Refused(_) => code::SWITCH_REFUSED,
        ClientError::Malformed(_) | ClientError::Version(_) => code::IO,
    };
    match e {
        // The client's message names vswitchd and the socket already.
        ClientError::Connect { .. } => Error::new(
            c,
            format!("{e}; or give the configuration's \"socket\" if it listens elsewhere"),
        ),
        e => Error::new(c, format!("vswitchd: {what}: {e}")),
    }
}

impl Switch {
    pub fn connect(socket: &Path) -> Result<Switch, Error> {
        Client::connect(socket)
            .map(|client| Switch { client })
            .map_err(|e| error(e, "cannot connect"))
    }

    fn call(&mut self, cmd: Command, what: &str) -> Result<Reply, Error> {
        self.client.call(cmd).map_err(|e| error(e, what))
    }

    pub fn port_add(&mut self, spec: PortSpec) -> Result<(), Error> {
        let what = format!("port add {}", spec.name);
        self.call(Command::PortAdd(spec), &what).map(|_| ())
    }

    /// Removes the port; a port that is not there is fine.
    pub fn port_del(&mut self, name: &str) -> Result<(), Error> {
        let cmd = Command::PortDel {
            name: name.to_string(),
            if_exists: true,
        };
        self.call(cmd, &format!("port del {name}")).map(|_| ())
    }

    pub fn ports(&mut self) -> Result<Vec<PortInfo>, Error> {
        match self.call(Command::PortList, "port list")? {
            Reply::Ports(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    pub fn addrs(&mut self) -> Result<Vec<AddrInfo>, Error> {
        match self.call(Command::AddrList, "addr list")? {
            Reply::Addrs(a) => Ok(a),
            other => Err(unexpected(&other)),
        }
    }

    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, Error> {
        match self.call(Command::RouteList, "route list")? {
            Reply::Routes(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether vswitchd answers (STATUS).
    pub fn alive(&mut self) -> Result<(), Error> {
        self.call(Command::Show, "show").map(|_| ())
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::new(code::IO, "vswitchd answered something unexpected")
        .with_details(format!("{reply:?}"))
}
