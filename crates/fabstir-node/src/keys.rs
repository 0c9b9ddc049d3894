//! The node's two keys: the Ethereum key it pays gas with, is paid to and signs with (given by
//! the operator, never written by the node, never logged), and its libp2p identity (created
//! on first start and kept in the storage folder, so the peer id registered on chain stays the
//! same across restarts).

use std::path::Path;

use fabstir_core::auth::SigningKey;
use fabstir_p2p::Keypair;

use crate::{Error, Result};

/// Name of the libp2p key file inside the storage folder.
pub const P2P_KEY_FILE: &str = "p2p.key";

/// Parses a hex private key (with or without `0x`, surrounding whitespace ignored).
pub fn parse_host_key(text: &str) -> Result<SigningKey> {
    let digits = text.trim().trim_start_matches("0x");
    let bytes = hex::decode(digits).map_err(|_| Error::Key("not hex".into()))?;
    SigningKey::from_slice(&bytes).map_err(|_| Error::Key("not a valid secp256k1 key".into()))
}

/// The host key from `FABSTIR_HOST_KEY` if set, else from `file`.
pub fn load_host_key(env: Option<String>, file: Option<&Path>) -> Result<SigningKey> {
    if let Some(text) = env {
        return parse_host_key(&text);
    }
    let file = file.ok_or_else(|| {
        Error::Key("set FABSTIR_HOST_KEY or host_key_file in the configuration".into())
    })?;
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        path: file.to_owned(),
        source,
    })?;
    parse_host_key(&text)
}

/// The node's libp2p keypair from `<storage>/p2p.key`, created (Ed25519) on first use.
pub fn load_or_create_p2p_key(storage: &Path) -> Result<Keypair> {
    let path = storage.join(P2P_KEY_FILE);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| Error::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(storage).map_err(io)?;
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| Error::Key(e.to_string()))?;
            let tmp = path.with_extension("key.tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(io)?;
            Ok(keypair)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabstir_core::auth::address_of;

    #[test]
    fn host_keys_parse_and_errors_hide_the_key() {
        let key =
            parse_host_key(" 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n")
                .unwrap();
        assert_eq!(
            format!("{:#x}", address_of(&key)),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        let err = parse_host_key("0xnothex").unwrap_err().to_string();
        assert!(!err.contains("nothex"), "{err}");
        assert!(parse_host_key("00").is_err());
        assert!(load_host_key(None, None).is_err());
    }

    #[test]
    fn p2p_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_p2p_key(dir.path()).unwrap();
        let again = load_or_create_p2p_key(dir.path()).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        std::fs::write(dir.path().join(P2P_KEY_FILE), b"garbage").unwrap();
        assert!(load_or_create_p2p_key(dir.path()).is_err());
    }
}
