//! Connections end the way the docs say: closed by the backend (4000), by app deletion
//! (4001), by shutdown (1001) or by the client; and interest follows membership.

use std::time::Duration;

use serde_json::json;
use signalbox_tests::{Signalbox, closed, eventually, next_message, within};

#[tokio::test]
async fn the_backend_closes_a_connection_or_all_of_a_users() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut one = app.connect(Some("henry"), &[], &[]).await;
    let mut phone = app.connect(Some("ida"), &[], &[]).await;
    let mut laptop = app.connect(Some("ida"), &[], &[]).await;
    let mut bystander = app.connect(Some("jack"), &["g"], &[]).await;

    app.backend.close_connection(&app.id, one.connection_id(), Some("bye henry")).await.expect("close");
    assert_eq!(closed(&mut one).await, (4000, "bye henry".to_owned()));

    app.backend.close_user_connections(&app.id, "ida", None).await.expect("close user");
    assert_eq!(closed(&mut phone).await.0, 4000);
    assert_eq!(closed(&mut laptop).await.0, 4000);

    app.publish_to_group("g", "still", json!(1)).await;
    assert_eq!(next_message(&mut bystander).await.event, "still");
    eventually("the closed connections to be gone", || async {
        (signalbox.server.connection_count() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_an_app_closes_its_connections_with_4001() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let other = signalbox.app().await;
    let mut doomed = app.connect(None, &[], &[]).await;
    let mut survivor = other.connect(None, &["g"], &[]).await;
    app.tenant.delete_app(&app.id).await.expect("delete");
    assert_eq!(closed(&mut doomed).await.0, 4001);
    other.publish_to_group("g", "fine", json!(1)).await;
    assert_eq!(next_message(&mut survivor).await.event, "fine");
}

#[tokio::test]
async fn shutdown_closes_clients_with_1001() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut client = app.connect(None, &[], &[]).await;
    let shutdown = tokio::spawn(signalbox.shutdown());
    assert_eq!(closed(&mut client).await.0, 1001);
    within("shutdown", shutdown).await.expect("shutdown task");
}

#[tokio::test]
async fn interest_follows_membership() {
    let signalbox = Signalbox::start_with(|config| config.edge.interest_linger = Duration::from_millis(100)).await;
    let app = signalbox.app().await;
    let baseline = signalbox.server.interest_count();
    let client = app.connect(Some("kim"), &[], &["join:*"]).await;
    // The hub-wide target and the user's.
    assert_eq!(signalbox.server.interest_count(), baseline + 2);
    within("join", client.join("room")).await.expect("join");
    assert_eq!(signalbox.server.interest_count(), baseline + 3);
    within("leave", client.leave("room")).await.expect("leave");
    eventually("the group subscription to be dropped after the linger", || async {
        (signalbox.server.interest_count() == baseline + 2).then_some(())
    })
    .await;
    client.close();
    eventually("every subscription of the connection to be dropped", || async {
        (signalbox.server.interest_count() == baseline).then_some(())
    })
    .await;
    assert_eq!(signalbox.server.connection_count(), 0);
}
