//! gRPC over HTTP/2 on a Unix socket, for the read-only calls chaos makes of containerd's own
//! API (list namespaces, containers, tasks) and of the CRI (list pods and containers, their
//! status), with the protobuf requests encoded and the answers decoded by hand.
//!
//! Why not the `containerd-client` crate: it brings tonic, tower and a build script that needs
//! protoc, for three unary calls whose requests are empty messages and whose answers chaos reads
//! five fields of. hyper's HTTP/2 client is already in the build (through reqwest), and the
//! protobuf wire format of strings, maps and varints is thirty lines.
use std::{collections::BTreeMap, path::Path, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `method` (e.g. `containerd.services.tasks.v1.Tasks/List`) with an empty request in
/// containerd namespace `namespace`; returns the answer's protobuf message.
///
/// Runs on its own thread with its own runtime, so callers inside or outside tokio can use it.
pub(super) fn call_empty(socket: &Path, namespace: Option<&str>, method: &str) -> Result<Vec<u8>, String> {
    call(socket, namespace, method, Vec::new())
}

/// Calls `method` with `request` (an encoded protobuf message); see [`call_empty`].
pub(super) fn call(socket: &Path, namespace: Option<&str>, method: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
    call_many(socket, namespace, vec![(method.to_owned(), request)])?
        .pop()
        .unwrap_or_else(|| Err(format!("{method}: no answer")))
}

/// Makes each call of `calls` (method, request) in turn over one connection, all within the
/// timeout: the CRI asks one status per container, and a connection (with a thread and a
/// runtime) each would cost more than the calls. The outer error is the connection's; each
/// call has its own (a container that ended between a list and its status is not found).
pub(super) fn call_many(
    socket: &Path,
    namespace: Option<&str>,
    calls: Vec<(String, Vec<u8>)>,
) -> Result<Vec<Result<Vec<u8>, String>>, String> {
    let (socket, namespace) = (socket.to_owned(), namespace.map(str::to_owned));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let all = async {
                let mut sender = connect(&socket).await?;
                let mut answers = Vec::with_capacity(calls.len());
                for (method, request) in calls {
                    answers.push(unary(&mut sender, namespace.as_deref(), &method, request).await);
                }
                Ok(answers)
            };
            tokio::time::timeout(TIMEOUT, all).await.map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
        })
    })
    .join()
    .map_err(|_| "the gRPC thread panicked".to_owned())?
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect(socket: &Path) -> Result<Sender, String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("connect: {e}"))?;
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn unary(
    sender: &mut Sender,
    namespace: Option<&str>,
    method: &str,
    message: Vec<u8>,
) -> Result<Vec<u8>, String> {
    // A gRPC message: 1 byte "not compressed", 4 bytes big-endian length, then the message.
    let length = u32::try_from(message.len()).map_err(|_| "a request too long for gRPC")?;
    let mut framed = vec![0];
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&message);
    let mut request = hyper::Request::post(format!("http://localhost/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(namespace) = namespace {
        request = request.header("containerd-namespace", namespace);
    }
    let request = request.body(Full::new(Bytes::from(framed))).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("{method}: {e}"))?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| format!("{method}: reading the answer: {e}"))?;
    // grpc-status is in the trailers, or in the headers of a trailers-only (error) answer.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status_of = |name: &str| {
        trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    match status_of("grpc-status").as_deref() {
        Some("0") | None if parts.status.is_success() => {}
        status => {
            return Err(format!(
                "{method}: gRPC status {} {}",
                status.unwrap_or(parts.status.as_str()),
                status_of("grpc-message").unwrap_or_default()
            ));
        }
    }
    let body = collected.to_bytes();
    let message = body.get(5..).ok_or_else(|| format!("{method}: an answer shorter than its gRPC frame"))?;
    Ok(message.to_vec())
}

/// One field of a protobuf message: its number and its value, for the wire types chaos reads.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

/// The fields of a protobuf message, in order; fixed-width ones are skipped.
pub(super) fn fields(mut message: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let number = u32::try_from(key >> 3).map_err(|_| "a field number out of range")?;
        match key & 7 {
            0 => out.push(Field::Varint(number, varint(&mut message)?)),
            1 => message = message.get(8..).ok_or("a truncated 64-bit field")?,
            2 => {
                let len = usize::try_from(varint(&mut message)?).map_err(|_| "a length out of range")?;
                let value = message.get(..len).ok_or("a truncated length-delimited field")?;
                out.push(Field::Bytes(number, value));
                message = &message[len..];
            }
            5 => message = message.get(4..).ok_or("a truncated 32-bit field")?,
            other => return Err(format!("protobuf wire type {other} is not expected here")),
        }
    }
    Ok(out)
}

fn varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or("a truncated varint")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

/// Appends field `number` as a length-delimited value (a string, bytes or a message).
pub(super) fn put_bytes(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    put_varint(out, u64::from(number) << 3 | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Appends field `number` as a varint (an integer, a bool, an enum).
pub(super) fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_varint(out, u64::from(number) << 3);
    put_varint(out, value);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint in field `number` (the first one), or 0 (protobuf's default).
pub(super) fn varint_field(fields: &[Field<'_>], number: u32) -> u64 {
    fields
        .iter()
        .find_map(|f| match f {
            Field::Varint(n, value) if *n == number => Some(*value),
            _ => None,
        })
        .unwrap_or(0)
}

/// The string in field `number` (the first one), or "".
pub(super) fn string(fields: &[Field<'_>], number: u32) -> String {
    fields
        .iter()
        .find_map(|f| match f {
            Field::Bytes(n, value) if *n == number => Some(String::from_utf8_lossy(value).into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Every embedded message in (repeated) field `number`.
pub(super) fn messages<'a>(fields: &[Field<'a>], number: u32) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter_map(|f| match f {
            Field::Bytes(n, value) if *n == number => Some(*value),
            _ => None,
        })
        .collect()
}

/// A `map<string, string>` in field `number`: each entry is a message of key (1) and value (2).
pub(super) fn string_map(fields: &[Field<'_>], number: u32) -> Result<BTreeMap<String, String>, String> {
    messages(fields, number)
        .into_iter()
        .map(|entry| {
            let entry = self::fields(entry)?;
            Ok((string(&entry, 1), string(&entry, 2)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strings_varints_and_maps() {
        // {1: "ab", 3: 300, 2: {1: "k", 2: "v"}} with a fixed32 field (5) in between.
        let message = [0x0a, 2, b'a', b'b', 0x18, 0xac, 0x02, 0x2d, 1, 2, 3, 4, 0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v'];
        let parsed = fields(&message).unwrap();
        assert_eq!(string(&parsed, 1), "ab");
        assert!(parsed.contains(&Field::Varint(3, 300)));
        assert_eq!(string_map(&parsed, 2).unwrap(), BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        assert!(fields(&[0x0a, 5, b'a']).is_err());
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_fields() {
        let mut message = Vec::new();
        put_bytes(&mut message, 1, b"3f2a");
        put_varint_field(&mut message, 2, 1);
        put_varint_field(&mut message, 7, 300);
        let parsed = fields(&message).unwrap();
        assert_eq!(string(&parsed, 1), "3f2a");
        assert_eq!((varint_field(&parsed, 2), varint_field(&parsed, 7), varint_field(&parsed, 9)), (1, 300, 0));
    }
}
