//! Background tasks are watched: every long-lived task of the process is
//! named in /readyz; the commit writer survives a panicking batch; the
//! commit writer, the sweeper, the rate limiter's cleanup and PostgreSQL's
//! notification listener and loader are restarted when they die, /readyz
//! answers 503 naming the task while it is down, and what was published
//! meanwhile is written and delivered.
//!
//! Tasks are stopped through hidden hooks (`Service::crash_commit_writer`,
//! `Tasks::kill`), the way a bug or a panic would stop them.

use std::time::{Duration, Instant};

use chantra::cli::Role;
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::sse_client::{self, SseStream};

const WAIT: Duration = Duration::from_secs(15);

on_both_backends!(
    supervised_commit_writer_survives_a_panic,
    supervised_sweeper_restarts_and_readyz_names_it,
    supervised_tasks_are_listed_and_restarted
);

async fn supervised_commit_writer_survives_a_panic(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("public").await;
    assert_eq!(app.publish_text(&channel, "before").await.status(), 201);

    app.service.crash_commit_writer();
    let crashed = app.publish_text(&channel, "in the crashing batch").await;
    assert_eq!(crashed.status(), 500, "the publish whose batch panicked fails");
    let body: Value = crashed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error");

    for i in 0..3 {
        let response = app.publish_text(&channel, &format!("after {i}")).await;
        assert_eq!(response.status(), 201, "publishes after the panic are written");
    }
    // What is stored, in id order: every acknowledged message, nothing else.
    assert_eq!(stored_texts(&app, &channel).await, ["before", "after 0", "after 1", "after 2"]);
}

/// The channel's stored messages, in id order, as text.
async fn stored_texts(app: &TestApp, channel: &Value) -> Vec<String> {
    use chantra_core::db::entity::message;
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
    let id: uuid::Uuid = channel["channel_id"].as_str().unwrap().parse().unwrap();
    let rows = message::Entity::find()
        .filter(message::Column::ChannelId.eq(id))
        .order_by_asc(message::Column::Id)
        .all(app.service.db())
        .await
        .unwrap();
    let mut texts = Vec::new();
    for row in rows {
        let bytes = app.service.store().get(&row.payload_object_key).await.unwrap();
        texts.push(String::from_utf8(bytes.to_vec()).unwrap());
    }
    texts
}

async fn supervised_sweeper_restarts_and_readyz_names_it(backend: Backend) {
    let options = Options { extra_args: vec!["--no-sweeper".into(), "false".into()], ..Default::default() };
    let app = spawn_app_with(backend, options).await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["tasks"]["sweeper"]["state"], "running");

    kill_and_recover(&app, "sweeper").await;
}

/// With every optional task on, /readyz lists exactly the process's
/// background tasks, all running. The commit writer and the rate limiter's
/// cleanup come back after being killed; a publish made while the writer
/// is down waits in the queue and is written once it is back.
async fn supervised_tasks_are_listed_and_restarted(backend: Backend) {
    let extra_args = ["--no-sweeper", "false", "--rate-limit-per-second", "1000"].map(String::from).to_vec();
    let options = Options { roles: Some(vec![Role::Rest, Role::Channels]), extra_args, ..Default::default() };
    let app = spawn_app_with(backend, options).await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    let mut expected = vec!["commit_writer", "rate_limit_cleanup", "sweeper"];
    if matches!(backend, Backend::Postgres) {
        expected.extend(["notification_listener", "notification_loader"]);
    }
    expected.sort_unstable();
    let tasks = ready["tasks"].as_object().expect("a task list");
    let mut names: Vec<&str> = tasks.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, expected, "{ready}");
    for (name, task) in tasks {
        assert_eq!(task["state"], "running", "{name}: {ready}");
        assert_eq!(task["restarts"], 0, "{name}: {ready}");
    }

    let channel = app.create_channel("public").await;
    kill_and_recover_while(&app, "commit_writer", async {
        publish(&app, &channel, "while the writer was down").await;
    })
    .await;
    publish(&app, &channel, "after the writer restarted").await;
    assert_eq!(stored_texts(&app, &channel).await, ["while the writer was down", "after the writer restarted"]);

    kill_and_recover(&app, "rate_limit_cleanup").await;
}

/// The listener and the loader, each killed in turn: /readyz names it while
/// it is down, and a reader on this process (PostgreSQL delivers through
/// the same listener to every process, this one included) gets what was
/// published meanwhile and what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_notification_tasks_restart_postgres() {
    let options = Options { roles: Some(vec![Role::Rest, Role::Channels]), ..Default::default() };
    let app = spawn_app_with(Backend::Postgres, options).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    // The listener may still be connecting: the first message proves it delivers.
    publish(&app, &channel, "first").await;
    assert_eq!(next_text(&mut stream).await, "first");

    for task in ["notification_loader", "notification_listener"] {
        kill_and_recover_while(&app, task, async {
            publish(&app, &channel, &format!("while the {task} was down")).await;
        })
        .await;
        assert_eq!(next_text(&mut stream).await, format!("while the {task} was down"));
        publish(&app, &channel, &format!("after the {task} restarted")).await;
        assert_eq!(next_text(&mut stream).await, format!("after the {task} restarted"));
    }
}

async fn kill_and_recover(app: &TestApp, task: &str) {
    kill_and_recover_while(app, task, async {}).await
}

/// Kills `task`, waits until /readyz reports it down (503, named), runs
/// `meanwhile`, then waits until it is running again with one more restart.
async fn kill_and_recover_while(app: &TestApp, task: &str, meanwhile: impl Future<Output = ()>) {
    let (_, before) = readyz(app).await;
    let restarts = before["tasks"][task]["restarts"].as_u64().unwrap_or_else(|| panic!("{task} in {before}"));
    assert!(app.tasks.kill(task), "{task} was running");

    let started = Instant::now();
    let down = loop {
        let (status, body) = readyz(app).await;
        if status == 503 && body["tasks"][task]["state"] == "down" {
            break body;
        }
        assert!(started.elapsed() < WAIT, "/readyz never reported {task} down: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(down["error"]["code"], "not_ready");
    let message = down["error"]["message"].as_str().unwrap();
    assert!(message.contains(task), "the message names the task: {message}");
    meanwhile.await;

    let up = loop {
        let (status, body) = readyz(app).await;
        if status == 200 {
            break body;
        }
        assert!(started.elapsed() < WAIT * 2, "{task} was not restarted: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(up["tasks"][task]["state"], "running");
    assert_eq!(up["tasks"][task]["restarts"].as_u64(), Some(restarts + 1), "{up}");
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.client.get(app.rest("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn subscribe(app: &TestApp, channel: &Value) -> SseStream {
    let stream = sse_client::connect(app.client.get(app.channel_url(channel))).await;
    assert_eq!(stream.status, 200);
    stream
}

async fn publish(app: &TestApp, channel: &Value, text: &str) {
    assert_eq!(app.publish_text(channel, text).await.status(), 201);
}

async fn next_text(stream: &mut SseStream) -> String {
    let events = stream.messages(1, WAIT).await;
    let event = events.first().expect("a message within the wait");
    event.text()
}
