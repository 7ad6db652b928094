//! The codec of FerrisDB's gRPC servers: prost encoding, with request bodies that fail to
//! decode reported as `INVALID_ARGUMENT` (tonic's prost codec says `INTERNAL`, which blames
//! the server for a bad request) with the `ferrisdb-error-code` metadata of
//! [`Error::InvalidArgument`] and the name of the message that was expected.
//!
//! `build.rs` generates the services' server halves with this codec and their client halves
//! with tonic's own, so a client that receives an undecodable *response* still sees
//! `INTERNAL`: there the fault is the server's.

use std::marker::PhantomData;

use ferrisdb_core::Error;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::status::to_status;

/// Encodes responses `T` and decodes requests `U` with prost (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        RequestCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { _type: PhantomData }
    }
}

/// Decodes one request message `U`; a body that is not a valid `U` is `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            to_status(Error::InvalidArgument(format!(
                "the request body is not a valid ferrisdb.v1.{} message: {e}",
                message_name::<U>()
            )))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The unqualified name of a generated message type (`PutRequest`).
fn message_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use tonic::Code;
    use tonic::codec::Streaming;

    use super::*;
    use crate::status::{ERROR_CODE_KEY, from_status};
    use crate::v1;

    /// Decodes `body` (one gRPC-framed message) as a server would.
    async fn decode_request(payload: &[u8]) -> Result<Option<v1::PutRequest>, Status> {
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(u32::try_from(payload.len()).expect("small"));
        framed.put_slice(payload);
        let body = tonic::body::Body::new(http_body_util::Full::new(framed.freeze()));
        let mut codec = RequestCodec::<v1::PutResponse, v1::PutRequest>::default();
        let mut stream = Streaming::new_request(codec.decoder(), body, None, None);
        stream.message().await
    }

    #[tokio::test]
    async fn a_valid_request_decodes() {
        let req = v1::PutRequest {
            key: "k".into(),
            value: "v".into(),
        };
        let back = decode_request(&req.encode_to_vec()).await.unwrap();
        assert_eq!(back, Some(req));
    }

    #[tokio::test]
    async fn a_malformed_request_is_invalid_argument_naming_the_message() {
        // Field 1 (bytes) declaring 100 bytes with only 2 present.
        let status = decode_request(&[0x0a, 100, 1, 2]).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("ferrisdb.v1.PutRequest"),
            "{}",
            status.message()
        );
        assert!(status.metadata().get(ERROR_CODE_KEY).is_some());
        assert!(matches!(from_status(&status), Error::InvalidArgument(_)));
    }
}
