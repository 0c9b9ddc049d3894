//! The request-response codec of the Fabstir protocols: each request and each response is one
//! length-prefixed frame (`u32` big-endian length, then the bincode message with its version
//! prefix, as [`fabstir_core::wire::encode`] makes it), limited by the message's `MAX_SIZE`.

use std::io;
use std::marker::PhantomData;

use async_trait::async_trait;
use fabstir_core::JobId;
use fabstir_core::cid::Cid;
use fabstir_core::wire::WireMessage;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::frame::{read_message, write_frame};

/// A request-response codec for a pair of wire messages.
#[derive(Debug)]
pub(crate) struct WireCodec<Req, Resp> {
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for WireCodec<Req, Resp> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for WireCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

fn to_io(e: crate::Error) -> io::Error {
    match e {
        crate::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[async_trait]
impl<Req, Resp> libp2p::request_response::Codec for WireCodec<Req, Resp>
where
    Req: WireMessage + Send + Sync + 'static,
    Resp: WireMessage + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await.map_err(to_io)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await.map_err(to_io)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await.map_err(to_io)?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &resp).await.map_err(to_io)?;
        io.close().await
    }
}

/// Asks a host for a stored result over `/fabstir/result/1.0.0`, as the job's client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRequest {
    /// The job whose result it is.
    pub job: JobId,
    /// The result's CID (its text form on the wire).
    #[serde(with = "fabstir_core::cid::text")]
    pub cid: Cid,
    /// Unix seconds after which the request is refused.
    pub expires_at: u64,
    /// The job's client's EIP-191 signature over
    /// [`result_request_message`](fabstir_core::auth::result_request_message).
    pub signature: Vec<u8>,
}

impl WireMessage for ResultRequest {
    const MAX_SIZE: usize = 512;
}

/// A host's answer to a [`ResultRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultResponse {
    /// The result's bytes (the client checks they hash to the CID).
    Found(Vec<u8>),
    /// The host has no result with that CID for that job.
    NotFound,
    /// The request is not the job's client's, or has expired.
    Refused,
}

impl WireMessage for ResultResponse {
    /// Results are generated text: 8 MiB is far above any job's output.
    const MAX_SIZE: usize = 8 * 1024 * 1024;
}

#[cfg(test)]
mod tests {
    use fabstir_core::primitives::{Address, H256};
    use fabstir_core::wire::{
        CapabilitiesRequest, ClientFrame, HostFrame, NegotiationRequest, QuoteRequest, encode,
        encode_frame,
    };
    use fabstir_core::{JobId, ModelId, TokenAmount};

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The examples of `docs/PROTOCOL.md`, byte for byte.
    #[test]
    fn encodings_match_the_protocol_document() {
        assert_eq!(
            hex(&encode(&CapabilitiesRequest { token: None }).unwrap()),
            "0100"
        );
        assert_eq!(
            hex(&encode(&NegotiationRequest::Posted { job: JobId(9) }).unwrap()),
            "010109"
        );
        assert_eq!(hex(&encode(&ClientFrame::Cancel).unwrap()), "0102");
        assert_eq!(hex(&encode(&HostFrame::Authenticated).unwrap()), "0101");
        assert_eq!(
            hex(&encode_frame(&ClientFrame::Cancel).unwrap()),
            "000000020102"
        );
        // Addresses, hashes and amounts travel as 0x-hex strings.
        let some = encode(&CapabilitiesRequest {
            token: Some(Address::repeat_byte(0xab)),
        })
        .unwrap();
        assert_eq!(&some[..3], &[0x01, 0x01, 42]);
        assert_eq!(&some[3..], format!("0x{}", "ab".repeat(20)).as_bytes());
        let quote = encode(&NegotiationRequest::Quote(QuoteRequest {
            model: ModelId([7; 32]),
            max_tokens: 300,
            token: Address::zero(),
            offered_price_per_token: TokenAmount::from_base_units(1000u64),
            prompt_hash: H256::repeat_byte(1),
            client: Address::zero(),
        }))
        .unwrap();
        let mut expected = vec![0x01, 0x00];
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[0xfb, 0x2c, 0x01]);
        expected.push(42);
        expected.extend_from_slice(format!("0x{}", "00".repeat(20)).as_bytes());
        expected.push(5);
        expected.extend_from_slice(b"0x3e8");
        expected.push(66);
        expected.extend_from_slice(format!("0x{}", "01".repeat(32)).as_bytes());
        expected.push(42);
        expected.extend_from_slice(format!("0x{}", "00".repeat(20)).as_bytes());
        assert_eq!(hex(&quote), hex(&expected));
        let found = encode(&ResultResponse::Found(b"hi".to_vec())).unwrap();
        assert_eq!(hex(&found), "0100026869");
    }
}
