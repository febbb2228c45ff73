//! Malformed client input gets an error reply or a documented close code, and never hurts
//! another connection.

use serde_json::json;
use signalbox_sdk::realtime::Event;
use signalbox_tests::{RawSocket, Signalbox, client_frame, closed, next_message, within};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn next_error(connection: &mut signalbox_sdk::realtime::Connection) -> (String, String) {
    within("an error frame", async {
        loop {
            match connection.next_event().await {
                Some(Event::Error(e)) => return (e.code, e.message),
                Some(Event::Closed { code, .. }) => panic!("closed ({code}) instead of an error"),
                Some(_) => {}
                None => panic!("no more events"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn malformed_frames_get_error_replies_and_the_connection_lives_on() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut client = app.connect(None, &["g"], &["join:*", "publish:*"]).await;
    let mut bystander = app.connect(None, &["g"], &[]).await;

    for (frame, code) in [
        ("this is not json", "bad_request"),
        ("[1,2,3]", "bad_request"),
        ("{}", "bad_request"),
        (r#"{"type":"fly"}"#, "unknown_type"),
        (r#"{"type":"join"}"#, "bad_request"),
        (r#"{"type":"join","group":42}"#, "bad_request"),
        (r#"{"type":"join","group":""}"#, "invalid_name"),
        (r#"{"type":"publish","group":"g"}"#, "bad_request"),
        (r#"{"type":"publish","group":"g","event":"e","data":1,"extra":true}"#, "bad_request"),
        ("{\"type\":\"join\",\"group\":\"a\\u0001b\"}", "invalid_name"),
    ] {
        client.send_text(frame).expect("send");
        let (got, message) = next_error(&mut client).await;
        assert_eq!(got, code, "{frame}");
        assert!(!message.is_empty());
    }
    // A request with an id gets its error as a reply to that id.
    let err = within("reply", client.request(serde_json::from_value(json!({"type": "nope"})).expect("object")))
        .await
        .expect_err("unknown type");
    assert_eq!(err.code(), Some("unknown_type"));

    // The connection still works, and so does everyone else's.
    within("publish", client.publish("g", "ok", json!(1))).await.expect("still usable");
    assert_eq!(next_message(&mut bystander).await.event, "ok");
}

#[tokio::test]
async fn frames_the_protocol_cannot_take_close_with_their_code() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut bystander = app.connect(None, &["g"], &[]).await;

    let mut binary = app.connect(None, &[], &[]).await;
    binary.send_frame(WsMessage::Binary(vec![1u8, 2, 3].into())).expect("send");
    assert_eq!(closed(&mut binary).await.0, 1003, "binary on a text protocol");

    let mut huge = app.connect(None, &[], &[]).await;
    huge.send_text(&format!(r#"{{"type":"publish","group":"g","event":"e","data":"{}"}}"#, "x".repeat(200_000)))
        .expect("send");
    assert_eq!(closed(&mut huge).await.0, 1009, "frame over the limit");

    let token = app.token(None, &[], &[]).await;
    let mut raw = RawSocket::connect(signalbox.server.addr(), &token).await;
    raw.write(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(raw.read_close_code().await, Some(1002), "unmasked client frame");

    let mut raw = RawSocket::connect(signalbox.server.addr(), &token).await;
    raw.write(&client_frame(0x1, &[0xff, 0xfe, 0xfd])).await;
    assert_eq!(raw.read_close_code().await, Some(1007), "text that is not UTF-8");

    let mut raw = RawSocket::connect(signalbox.server.addr(), &token).await;
    raw.write(&client_frame(0x3, b"")).await;
    assert_eq!(raw.read_close_code().await, Some(1002), "reserved opcode");

    // Nobody else noticed.
    app.publish_to_group("g", "still-here", json!(1)).await;
    assert_eq!(next_message(&mut bystander).await.event, "still-here");
}

#[tokio::test]
async fn too_many_malformed_frames_in_a_row_close_the_connection() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut client = app.connect(None, &[], &[]).await;
    for _ in 0..60 {
        let _ = client.send_text("not json");
    }
    assert_eq!(closed(&mut client).await.0, 4002);
}

#[tokio::test]
async fn upgrades_that_are_not_websocket_get_problem_json() {
    let signalbox = Signalbox::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/client", signalbox.http_url());
    let plain = http.get(&url).send().await.expect("send");
    assert_eq!(plain.status().as_u16(), 400);
    assert_eq!(plain.headers()["content-type"], "application/problem+json");
    let wrong_version = http
        .get(&url)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "8")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_version.status().as_u16(), 426);
    let wrong_protocol = http
        .get(&url)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Protocol", "mqtt")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_protocol.status().as_u16(), 400);
}
