//! Which server a command talks to and which issuer root key it trusts.

use std::path::{Path, PathBuf};

use scrip::client::HttpClient;
use scrip::setup;
use scrip::tokens::keys::DirectoryRoot;
use scrip::tokens::VerifyingKey;
use scrip::Error;

use crate::files::{read_text, write_private};

/// How to reach and trust the server.
#[derive(clap::Args, Clone)]
pub struct Trust {
    /// The server's data directory, where its `operator-token` and `root-key.pem` are
    /// read from when not given otherwise.
    #[arg(long, env = "SCRIP_DATA_DIR", default_value = "./scrip-data")]
    pub data_dir: PathBuf,
    /// Operator token (merchant registration).
    #[arg(long, env = "SCRIP_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// The issuer's root key (PEM) to pin. Default: <data-dir>/root-key.pem if present,
    /// else the server's, trusted on first use.
    #[arg(long, env = "SCRIP_ROOT_KEY")]
    pub root_key: Option<PathBuf>,
}

impl Trust {
    pub fn operator_token(&self) -> Option<String> {
        self.operator_token.clone().or_else(|| {
            std::fs::read_to_string(self.data_dir.join("operator-token"))
                .ok()
                .map(|s| s.trim().to_owned())
        })
    }

    pub fn root_key_path(&self) -> Option<PathBuf> {
        self.root_key.clone().or_else(|| {
            let p = self.data_dir.join("root-key.pem");
            p.exists().then_some(p)
        })
    }
}

/// Pins the root key in the state directory (from a file or, on first use, the server).
pub async fn pin_root(dir: &Path, client: &HttpClient, trust: &Trust) -> Result<(), Error> {
    let mut err = std::io::stderr();
    let root = setup::root_key(client, trust.root_key_path().as_deref(), &mut err).await?;
    write_private(
        &dir.join("root-key.pem"),
        root.public_key().to_pem()?.as_bytes(),
    )?;
    write_private(&dir.join("server"), client.base_url().as_bytes())
}

pub fn load_root(dir: &Path) -> Result<VerifyingKey<DirectoryRoot>, Error> {
    Ok(VerifyingKey::from_pem(&read_text(
        &dir.join("root-key.pem"),
    )?)?)
}

pub fn load_client(dir: &Path) -> Result<HttpClient, Error> {
    Ok(HttpClient::new(&read_text(&dir.join("server"))?)?)
}
