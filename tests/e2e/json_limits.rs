//! JSON that clients could not read back is refused where it enters: nested deeper than 64
//! levels, or a number with no finite value (`1e999999`) — over REST (400 `invalid_json`)
//! and from clients over the native socket (a `bad_request` reply).

use signalbox_tests::{RawSocket, Signalbox, client_frame, within};

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// POSTs `data` (raw JSON text) as a group publish; returns the status and the body.
async fn publish_raw(server: &Signalbox, app: &signalbox_tests::TestApp, data: &str) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"event":"e","data":{data}}}"#);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/{}/groups/room/messages", server.http_url(), app.id))
        .bearer_auth(format!("{}.{}", app.key_id, app.secret))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn rest_publishes_refuse_json_nested_too_deep_or_with_infinite_numbers() {
    let server = Signalbox::start().await;
    let app = server.app().await;
    for data in [nested(10_000), nested(65), r#"{"x":1e999999}"#.to_owned(), format!("[{}]", "9".repeat(400))] {
        let (status, problem) = publish_raw(&server, &app, &data).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["code"], "invalid_json", "{problem}");
        assert_eq!(problem["type"], "https://signalbox.dev/problems/invalid-json");
    }
    // At the limit, and ordinary numbers, are fine.
    for data in [nested(64), r#"{"x":1e308,"y":-2.5e-300,"z":12345678901234567890}"#.to_owned()] {
        let (status, body) = publish_raw(&server, &app, &data).await;
        assert_eq!(status, 202, "{body}");
    }
}

/// Publishes `data` over a raw native socket with reply id 1; returns the reply.
async fn client_publish(socket: &mut RawSocket, data: &str) -> serde_json::Value {
    let frame = format!(r#"{{"type":"publish","group":"room","event":"e","data":{data},"id":1}}"#);
    socket.write(&client_frame(0x1, frame.as_bytes())).await;
    within("the reply", async {
        loop {
            let (opcode, payload) = socket.read_frame().await.expect("open");
            if opcode != 0x1 {
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&payload).expect("json");
            if value["type"] == "reply" && value["id"] == 1 {
                return value;
            }
        }
    })
    .await
}

#[tokio::test]
async fn client_publishes_refuse_json_nested_too_deep_or_with_infinite_numbers() {
    let server = Signalbox::start().await;
    let app = server.app().await;
    let token = app.token(Some("ann"), &["room"], &["publish:room"]).await;
    let mut socket = RawSocket::connect(server.server.addr(), &token).await;
    for data in [nested(1_000), nested(65), "1e999999".to_owned(), r#"{"n":[-1E400]}"#.to_owned()] {
        let reply = client_publish(&mut socket, &data).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    }
    for data in [nested(64), "1e308".to_owned()] {
        let reply = client_publish(&mut socket, &data).await;
        assert!(reply.get("error").is_none(), "{reply}");
    }
}
