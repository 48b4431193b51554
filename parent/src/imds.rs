//! The EC2 instance id from the instance metadata service, IMDSv2 only: a
//! session token (`PUT /latest/api/token`), then `GET
//! /latest/meta-data/instance-id` with it. Two tiny HTTP/1.1 exchanges over
//! plain TCP to a link-local address, with a timeout and a size cap on each
//! answer; the id must look like an EC2 instance id before anyone signs it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
pub use verifier::pcr::is_instance_id;

/// Where IMDS answers on EC2.
pub const IMDS_ADDR: &str = "169.254.169.254:80";
/// Largest IMDS answer read.
const MAX_RESPONSE: u64 = 8 * 1024;
/// How long one exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Token lifetime asked for, in seconds.
const TOKEN_TTL: u32 = 60;

/// Why the instance id could not be read.
#[derive(Debug)]
pub struct ImdsError(pub String);

impl std::fmt::Display for ImdsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "instance metadata service: {}", self.0)
    }
}

impl std::error::Error for ImdsError {}

/// The instance id from the IMDS at `addr` (host:port).
pub async fn instance_id(addr: &str) -> Result<String, ImdsError> {
    let token = exchange(
        addr,
        &format!(
            "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: {TOKEN_TTL}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    let token = token.trim();
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ImdsError("the session token is malformed".into()));
    }
    let id = exchange(
        addr,
        &format!(
            "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    let id = id.trim().to_owned();
    if !is_instance_id(&id) {
        return Err(ImdsError(format!("{id:?} is not an EC2 instance id")));
    }
    Ok(id)
}

/// Sends `request`, returns the body of a 200 answer.
async fn exchange(addr: &str, request: &str) -> Result<String, ImdsError> {
    let fail = |e: std::io::Error| ImdsError(format!("{addr}: {e}"));
    let response = tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.map_err(fail)?;
        stream.write_all(request.as_bytes()).await.map_err(fail)?;
        let mut buf = Vec::new();
        stream
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(fail)?;
        Ok::<_, ImdsError>(buf)
    })
    .await
    .map_err(|_| ImdsError(format!("{addr}: no answer within {TIMEOUT:?}")))??;
    if response.len() as u64 > MAX_RESPONSE {
        return Err(ImdsError(format!("an answer over {MAX_RESPONSE} bytes")));
    }
    let text =
        String::from_utf8(response).map_err(|_| ImdsError("an answer that is not text".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ImdsError("an answer without headers".into()))?;
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => {}
        Some("401") => return Err(ImdsError("401: the token was refused".into())),
        _ => return Err(ImdsError(format!("unexpected answer {status:?}"))),
    }
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err(ImdsError("a chunked answer".into()));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_have_the_ec2_shape() {
        for ok in ["i-0ffff615a409a72d7", "i-1234abcd"] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in [
            "",
            "i-",
            "i-XYZ",
            "i-0ffff615a409a72d",
            "x-0ffff615a409a72d7",
            "i-0FFFF615A409A72D7",
            "i-1234abcd\n",
        ] {
            assert!(!is_instance_id(bad), "{bad:?}");
        }
    }
}
