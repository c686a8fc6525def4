//! Issue 13, item 4: one anonymous publisher cannot make the server hold
//! unbounded read grants, nor answer with all of them at once.
//!
//! `grants_and_their_listing_are_bounded`: one private channel, 800
//! grant creations (16 at a time), then 16 concurrent `GET /v1/channels/{id}`
//! for several rounds, while the server's VmRSS is sampled. With the cap
//! (MAX_GRANTS_PER_CHANNEL, 300 here to keep the case short) creation stops with 409
//! `too_many_grants`; the channel view carries at most 100 grants, and the
//! paged list returns each grant once. Prints the peak RSS.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;

use crate::common::{RssSampler, create_channel, proc_kib};
use crate::server::Stack;

const ATTEMPTS: usize = 800;
const CAP: usize = 300;
const CONCURRENCY: usize = 16;
const GET_ROUNDS: usize = 5;
/// The server's growth over its idle size while answering the GETs.
const GROWTH_CEILING_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_their_listing_are_bounded() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let cap = CAP.to_string();
    let server = stack.start("server", "rest", &[("MAX_GRANTS_PER_CHANNEL", cap.as_str())]).await;
    let client = crate::common::api_client(Duration::from_secs(30));
    let channel = create_channel(&client, &server.rest_url(""), "private").await;
    let id = channel["channel_id"].as_str().unwrap().to_owned();
    let token = channel["publish_token"].as_str().unwrap().to_owned();
    let grants_url = server.rest_url(&format!("/v1/channels/{id}/read-grants"));

    let statuses: Vec<u16> = futures::stream::iter(0..ATTEMPTS)
        .map(|_| {
            let request = client.post(&grants_url).header("x-publish-token", &token).send();
            async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    println!("{ATTEMPTS} grant creations: {created} created, {refused} refused (409) in {:?}", started.elapsed());

    let pid = server.pid();
    let idle_kib = server.rss_kib();
    let sampler = RssSampler::start(pid);
    let view_url = server.rest_url(&format!("/v1/channels/{id}"));
    let mut largest_body = 0;
    let mut views = Vec::new();
    for _ in 0..GET_ROUNDS {
        let bodies: Vec<String> = futures::future::join_all((0..CONCURRENCY).map(|_| async {
            let response = client.get(&view_url).header("x-publish-token", &token).send().await.expect("GET channel");
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }))
        .await;
        for body in &bodies {
            largest_body = largest_body.max(body.len());
            let view: Value = serde_json::from_str(body).unwrap();
            views.push((view["read_grants"].as_array().map_or(0, Vec::len), view["read_grants_total"].clone()));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let peak_kib = sampler.peak_kib().max(proc_kib(pid, "VmRSS").unwrap_or(0));
    let hwm_kib = proc_kib(pid, "VmHWM").unwrap_or(0);
    println!(
        "{CONCURRENCY} concurrent GET /v1/channels/{{id}} x {GET_ROUNDS}: largest body {largest_body} B; \
         RSS idle {idle_kib} KiB, peak while answering {peak_kib} KiB (VmHWM {hwm_kib} KiB)"
    );
    assert_eq!(created + refused, ATTEMPTS, "every creation is answered 201 or 409: {statuses:?}");
    assert_eq!(created, CAP - 1, "the channel's initial grant and {} more make the cap", CAP - 1);
    assert!(views.iter().all(|(shown, total)| *shown == 100 && *total == CAP), "{:?}", views.first());

    // The paged list returns every grant once.
    let mut seen = std::collections::BTreeSet::new();
    let mut after = String::new();
    loop {
        let page: Value = client
            .get(format!("{grants_url}?limit=500{after}"))
            .header("x-publish-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for grant in page["read_grants"].as_array().unwrap() {
            assert!(seen.insert(grant["grant_id"].as_str().unwrap().to_owned()), "listed twice: {grant}");
        }
        if page["has_more"] == false {
            break;
        }
        after = format!("&after={}", page["next_cursor"].as_str().unwrap());
    }
    assert_eq!(seen.len(), CAP);

    println!("took {:?}", started.elapsed());
    assert!(largest_body < 64 * 1024, "the view stays small: {largest_body} B");
    assert!(
        peak_kib.saturating_sub(idle_kib) < GROWTH_CEILING_KIB,
        "RSS grew {} KiB answering the GETs",
        peak_kib.saturating_sub(idle_kib)
    );
}
