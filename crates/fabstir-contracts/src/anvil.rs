//! A test harness: a real local chain (the pinned `anvil` from `.tools/`) on a free
//! 127.0.0.1 port, killed when dropped. Public so that other crates' tests and the devnet
//! reuse it.
//!
//! The binary is `$FABSTIR_ANVIL` if set, else `.tools/node_modules/.bin/anvil` in the
//! workspace (found from this crate's source location or from the current directory
//! upwards). A missing binary is an error that says to run `cargo xtask tools`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ethers::providers::{Http, Middleware, Provider};
use ethers::signers::LocalWallet;

use crate::error::{Error, Result};

mod proxy;

pub use proxy::RpcProxy;

/// Where `cargo xtask tools` puts anvil, relative to the workspace root.
pub const ANVIL_RELATIVE_PATH: &str = ".tools/node_modules/.bin/anvil";

/// How to start anvil.
#[derive(Debug, Clone)]
pub struct AnvilConfig {
    /// Chain id (anvil's default is 31337).
    pub chain_id: u64,
    /// Number of funded dev accounts.
    pub accounts: u32,
    /// ETH per dev account.
    pub balance_eth: u64,
    /// How long to wait for anvil to listen.
    pub startup_timeout: Duration,
}

impl Default for AnvilConfig {
    fn default() -> Self {
        Self {
            chain_id: 31_337,
            accounts: 10,
            balance_eth: 10_000,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running anvil process; dropping it kills the process.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    chain_id: u64,
    keys: Vec<LocalWallet>,
}

impl Anvil {
    /// Starts anvil with the default configuration and waits until it answers.
    pub fn spawn() -> Result<Self> {
        Self::spawn_with(&AnvilConfig::default())
    }

    /// Starts anvil with `config` on a free port and waits until it answers.
    pub fn spawn_with(config: &AnvilConfig) -> Result<Self> {
        let binary = binary()?;
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--chain-id", &config.chain_id.to_string()])
            .args(["--accounts", &config.accounts.to_string()])
            .args(["--balance", &config.balance_eth.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Anvil(format!("starting {}: {e}", binary.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(Error::Anvil("no stdout pipe".into()));
        };
        let (tx, rx) = mpsc::channel::<Startup>();
        // The reader keeps draining anvil's log after start-up so that the pipe never fills
        // and blocks the chain; it ends when anvil exits.
        std::thread::spawn(move || read_startup(stdout, tx));
        let mut anvil = Self {
            child,
            port: 0,
            chain_id: config.chain_id,
            keys: Vec::new(),
        };
        let deadline = Instant::now() + config.startup_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Startup::Key(key)) => {
                    let wallet: LocalWallet = key
                        .parse()
                        .map_err(|e| Error::Anvil(format!("bad dev key from anvil: {e}")))?;
                    anvil.keys.push(wallet);
                }
                Ok(Startup::Listening(port)) => {
                    anvil.port = port;
                    break;
                }
                Err(_) => {
                    return Err(Error::Anvil(format!(
                        "{} did not start listening within {:?}",
                        binary.display(),
                        config.startup_timeout
                    )));
                }
            }
        }
        anvil.wait_answering(deadline)?;
        Ok(anvil)
    }

    fn wait_answering(&self, deadline: Instant) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Anvil(format!("anvil does not answer on {addr}")))
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The funded dev accounts' keys, as anvil printed them.
    pub fn wallets(&self) -> &[LocalWallet] {
        &self.keys
    }

    /// The `index`-th dev account's key.
    pub fn wallet(&self, index: usize) -> Result<LocalWallet> {
        self.keys
            .get(index)
            .cloned()
            .ok_or_else(|| Error::Anvil(format!("anvil has no dev account {index}")))
    }

    /// A provider for this chain that polls every 20 ms.
    pub fn provider(&self) -> Result<Provider<Http>> {
        Provider::<Http>::try_from(self.endpoint())
            .map(|p| p.interval(Duration::from_millis(20)))
            .map_err(|e| Error::Anvil(e.to_string()))
    }

    /// Deploys the whole system ([`crate::deploy_local`]) from dev account `owner`, which then
    /// owns the contracts.
    pub async fn deploy(
        &self,
        owner: usize,
        config: &crate::LocalDeployConfig,
    ) -> Result<fabstir_core::Deployment> {
        let deployer = std::sync::Arc::new(ethers::middleware::SignerMiddleware::new(
            self.provider()?,
            ethers::signers::Signer::with_chain_id(self.wallet(owner)?, self.chain_id),
        ));
        crate::deploy_local(&deployer, config).await
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Startup {
    Key(String),
    Listening(u16),
}

fn read_startup(stdout: std::process::ChildStdout, tx: mpsc::Sender<Startup>) {
    let mut in_keys = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.starts_with("Private Keys") {
            in_keys = true;
        } else if line.starts_with("Wallet") {
            in_keys = false;
        } else if in_keys && line.starts_with('(') {
            if let Some(key) = line.split_whitespace().nth(1) {
                let _ = tx.send(Startup::Key(key.to_owned()));
            }
        } else if let Some(addr) = line.strip_prefix("Listening on ")
            && let Some(port) = addr.rsplit(':').next().and_then(|p| p.parse().ok())
        {
            let _ = tx.send(Startup::Listening(port));
        }
    }
}

/// The anvil binary: `$FABSTIR_ANVIL`, else `.tools/node_modules/.bin/anvil` in the workspace.
pub fn binary() -> Result<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    // This crate lives at <workspace>/crates/fabstir-contracts.
    if let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2) {
        roots.push(root.to_path_buf());
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    find_binary(std::env::var_os("FABSTIR_ANVIL"), &roots)
}

fn find_binary(env: Option<std::ffi::OsString>, roots: &[PathBuf]) -> Result<PathBuf> {
    if let Some(path) = env {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::Anvil(format!(
            "FABSTIR_ANVIL={} does not exist: run `cargo xtask tools` or fix the variable",
            path.display()
        )));
    }
    roots
        .iter()
        .map(|root| root.join(ANVIL_RELATIVE_PATH))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::Anvil(format!(
                "{ANVIL_RELATIVE_PATH} not found: run `cargo xtask tools` to install the pinned \
                 anvil (or set FABSTIR_ANVIL to an anvil binary)"
            ))
        })
}

/// Calls one of anvil's (or any node's) JSON-RPC methods, naming the method in an error.
async fn rpc<M, P, R>(provider: &M, method: &str, params: P) -> Result<R>
where
    M: Middleware,
    P: serde::Serialize + std::fmt::Debug + Send + Sync,
    R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send,
{
    provider
        .provider()
        .request(method, params)
        .await
        .map_err(|e| Error::Rpc(format!("{method}: {e}")))
}

/// No parameters, as anvil's methods without any expect them.
const NO_PARAMS: [(); 0] = [];

/// Moves the chain's clock forward by `seconds` and mines a block with the new time.
pub async fn advance_time<M: Middleware>(provider: &M, seconds: u64) -> Result<()> {
    rpc::<_, _, serde_json::Value>(provider, "evm_increaseTime", [seconds]).await?;
    mine(provider).await
}

/// Mines one block.
pub async fn mine<M: Middleware>(provider: &M) -> Result<()> {
    rpc::<_, _, serde_json::Value>(provider, "evm_mine", NO_PARAMS).await?;
    Ok(())
}

/// Turns anvil's automatic mining on or off. While it is off, transactions wait in the pool
/// until [`mine`] puts them in one block (how tests make two transactions race).
pub async fn set_automine<M: Middleware>(provider: &M, on: bool) -> Result<()> {
    rpc::<_, _, serde_json::Value>(provider, "evm_setAutomine", [on]).await?;
    Ok(())
}

/// Makes anvil mine a block every `seconds` instead of one per transaction, as a real chain
/// does (Base: 2 seconds); transactions then wait for the next block.
pub async fn set_block_time<M: Middleware>(provider: &M, seconds: u64) -> Result<()> {
    set_automine(provider, false).await?;
    rpc::<_, _, serde_json::Value>(provider, "evm_setIntervalMining", [seconds]).await?;
    Ok(())
}

/// Sends `data` to `to` from the unlocked dev account `from` without estimating gas (a fixed
/// limit of 500,000) and with a priority fee of 100 gwei, above anything the default fee
/// estimate picks: with automine off it is mined ahead of transactions already in the pool,
/// whatever state they were estimated on. How tests make a transaction lose a race.
pub async fn send_ahead<M: Middleware>(
    provider: &M,
    from: ethers::types::Address,
    to: ethers::types::Address,
    data: ethers::types::Bytes,
) -> Result<ethers::types::H256> {
    let tx = ethers::types::Eip1559TransactionRequest::new()
        .from(from)
        .to(to)
        .data(data)
        .gas(500_000u64)
        .max_priority_fee_per_gas(100_000_000_000u64)
        .max_fee_per_gas(1_000_000_000_000u64);
    rpc(provider, "eth_sendTransaction", [tx]).await
}

/// How many transactions wait in anvil's pool, ready to be mined.
pub async fn pending_transactions<M: Middleware>(provider: &M) -> Result<u64> {
    let status: serde_json::Value = rpc(provider, "txpool_status", NO_PARAMS).await?;
    let pending = status["pending"]
        .as_str()
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| Error::Rpc(format!("txpool_status: unexpected answer {status}")))?;
    Ok(pending)
}

/// Waits (polling every 10 ms, for at most `limit`) until at least `count` transactions wait
/// in anvil's pool.
pub async fn wait_for_pending<M: Middleware>(
    provider: &M,
    count: u64,
    limit: std::time::Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while pending_transactions(provider).await? < count {
        if std::time::Instant::now() >= deadline {
            return Err(Error::Rpc(format!(
                "fewer than {count} transactions reached the pool within {limit:?}"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_says_how_to_install() {
        let roots = [PathBuf::from("/nonexistent-fabstir-root")];
        let err = find_binary(None, &roots).unwrap_err().to_string();
        assert!(err.contains("cargo xtask tools"), "{err}");
        let err = find_binary(Some("/nonexistent/anvil".into()), &roots)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FABSTIR_ANVIL") && err.contains("cargo xtask tools"),
            "{err}"
        );
    }

    #[test]
    fn startup_lines_are_parsed() {
        let (tx, rx) = mpsc::channel();
        let text = "Private Keys\n==================\n(0) 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\nWallet\n(0) 0xnot-a-key\nListening on 127.0.0.1:4242\n";
        let mut child = Command::new("printf")
            .arg("%b")
            .arg(text)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        read_startup(child.stdout.take().unwrap(), tx);
        child.wait().unwrap();
        let got: Vec<String> = rx
            .try_iter()
            .map(|s| match s {
                Startup::Key(k) => k,
                Startup::Listening(p) => p.to_string(),
            })
            .collect();
        assert_eq!(
            got,
            [
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
                "4242"
            ]
        );
    }
}
