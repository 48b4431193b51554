//! The IMDSv2 client against a fake metadata service on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use parent::imds::instance_id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "AQAEAFake-token==";

/// Serves IMDSv2: a token for PUT with a TTL header, the id for GET with
/// that token, 401 otherwise. `id` is what it answers.
async fn fake_imds(id: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, body) = if req.starts_with("PUT /latest/api/token ")
                && req.contains("X-aws-ec2-metadata-token-ttl-seconds: ")
            {
                ("200 OK", TOKEN.to_owned())
            } else if req.starts_with("GET /latest/meta-data/instance-id ")
                && req.contains(&format!("X-aws-ec2-metadata-token: {TOKEN}\r\n"))
            {
                ("200 OK", id.to_owned())
            } else {
                ("401 Unauthorized", String::new())
            };
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                .await;
        }
    });
    addr
}

#[tokio::test]
async fn reads_the_instance_id_with_a_session_token() {
    let addr = fake_imds("i-0ffff615a409a72d7").await;
    assert_eq!(instance_id(&addr).await.unwrap(), "i-0ffff615a409a72d7");
}

#[tokio::test]
async fn refuses_what_is_not_an_instance_id() {
    let addr = fake_imds("<html>captive portal</html>").await;
    let e = instance_id(&addr).await.unwrap_err().to_string();
    assert!(e.contains("not an EC2 instance id"), "{e}");
}

#[tokio::test]
async fn says_when_nothing_answers() {
    let e = instance_id("127.0.0.1:1").await.unwrap_err().to_string();
    assert!(e.contains("127.0.0.1:1"), "{e}");
}
