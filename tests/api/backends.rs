//! Backend behaviour that only the PostgreSQL + S3 pair has: bucket creation
//! and a database outage (the SQLite file cannot go away mid-request).

use serde_json::Value;

use crate::helpers::{Backend, FaultProxy, Options, TestDatabase, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_is_created_when_missing() {
    let bucket = format!("chantra-new-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let options = Options { extra_args: vec!["--s3-bucket".into(), bucket.clone()], ..Default::default() };
    let app = spawn_app_with(Backend::Postgres, options).await;
    let channel = app.create_channel("public").await;
    let published: Value = app.publish_text(&channel, "in a new bucket").await.json().await.unwrap();
    assert_eq!(app.stored_payload(&published).await, b"in a new bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_a_prompt_503() {
    let database = TestDatabase::create().await;
    let url = reqwest::Url::parse(&database.url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432)).parse().unwrap();
    let proxy = FaultProxy::start(target).await;
    let mut through_proxy = url.clone();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    let options = Options {
        extra_args: vec![
            "--database-url".into(),
            through_proxy.to_string(),
            "--db-acquire-timeout-secs".into(),
            "2".into(),
        ],
        ..Default::default()
    };
    let app = spawn_app_with(Backend::Postgres, options).await;
    let channel = app.create_channel("public").await;
    assert_eq!(app.publish_text(&channel, "before").await.status(), 201);

    proxy.set_up(false).await;
    let started = std::time::Instant::now();
    let response = app.publish_text(&channel, "during").await;
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "503 came after {:?}", started.elapsed());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    let ready = app.client.get(app.rest("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    proxy.set_up(true).await;
    // The pool reconnects by itself: no restart.
    let mut status = 0;
    for _ in 0..20 {
        status = app.publish_text(&channel, "after").await.status().as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(status, 201);
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 2, "the failed publish left nothing behind");
    drop(app);
    drop(database);
}
